"""SCRAM-SHA-256 client for auth's interop tests, written from seed 003's
client_initiate_authentication / client_generate_proof (stdlib only).

Usage: scram_client.py PORT, with the user name and the password on stdin,
one a line (never argv). Speaks the test server's line protocol, one JSON
object a line:
  -> {"user", "cnonce"}                    <- {"salt", "iterations", "combined_nonce"}
  -> {"user", "combined_nonce", "proof"}   <- {"signature"}
(either answer may be {"error"} instead), then checks the server signature.
Exit status: 0 OK, 2 refused by the server, 3 bad server signature,
4 any other failure.
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import sys


# ------------------ the seed's client functions ------------------
def client_initiate_authentication(username):
    """The client starts: a 16-byte client nonce, base64."""
    client_nonce = base64.b64encode(os.urandom(16)).decode()
    return {"username": username, "client_nonce": client_nonce}


def client_generate_proof(user, password, salt, iteration_count, cnonce, combined_nonce):
    """The client proof, as in the seed."""
    salted_password = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), iteration_count
    )
    client_key = hmac.new(salted_password, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted_password, b"Server Key", hashlib.sha256).digest()
    auth_message = (
        f"n={user},r={cnonce},"  # client-first-bare
        f"r={combined_nonce},s={salt},i={iteration_count},"  # server-first
        f"c=biws,r={combined_nonce}"  # client-final-without-proof
    )
    client_signature = hmac.new(stored_key, auth_message.encode(), hashlib.sha256).digest()
    client_proof = bytes([ck ^ cs for ck, cs in zip(client_key, client_signature)])
    return {
        "client_proof": base64.b64encode(client_proof).decode(),
        "server_key": server_key,
        "auth_message": auth_message,
    }


# ------------------ the test's transport ------------------
def main():
    user = sys.stdin.readline().rstrip("\n")
    password = sys.stdin.readline().rstrip("\n")
    port = int(sys.argv[1])
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError as e:
        print("CONNECT", e, flush=True)
        return 4
    with sock, sock.makefile("rwb") as f:

        def call(obj):
            f.write(json.dumps(obj).encode() + b"\n")
            f.flush()
            line = f.readline()
            if not line:
                raise EOFError("server hung up")
            return json.loads(line)

        try:
            client_data = client_initiate_authentication(user)
            first = call({"user": user, "cnonce": client_data["client_nonce"]})
            if "error" in first:
                print("REFUSED", first["error"], flush=True)
                return 2
            if not first["combined_nonce"].startswith(client_data["client_nonce"]):
                print("BAD NONCE", flush=True)
                return 4
            proof = client_generate_proof(
                user,
                password,
                first["salt"],
                first["iterations"],
                client_data["client_nonce"],
                first["combined_nonce"],
            )
            final = call(
                {"user": user, "combined_nonce": first["combined_nonce"], "proof": proof["client_proof"]}
            )
            if "error" in final:
                print("REFUSED", final["error"], flush=True)
                return 2
            computed = hmac.new(
                proof["server_key"], proof["auth_message"].encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(base64.b64encode(computed).decode(), final["signature"]):
                print("BAD SERVER SIGNATURE", flush=True)
                return 3
        except (OSError, EOFError, ValueError, KeyError) as e:
            print("FAILED", type(e).__name__, e, flush=True)
            return 4
    print("OK", user, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
