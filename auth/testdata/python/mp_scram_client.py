"""Python side of auth's interop test for user logins in Python mode: a
multiprocessing.connection Client that, after the authkey handshake, logs in
with SCRAM-SHA-256 using seed 003's own client functions (stdlib only), then
checks an echo.

Usage: mp_scram_client.py PORT, with three lines on stdin (never argv): the
authkey in hex, the user name, the password.
Exit status: 0 OK, 2 refused (AuthenticationError or a login error), 3 the
server's signature is wrong, 4 any other failure.
"""
import base64
import hmac
import json
import os
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scram_client import client_generate_proof, client_initiate_authentication  # noqa: E402


def main():
    key = bytes.fromhex(sys.stdin.readline().strip())
    user = sys.stdin.readline().rstrip("\n")
    password = sys.stdin.readline().rstrip("\n")
    port = int(sys.argv[1])
    try:
        conn = Client(("127.0.0.1", port), authkey=key)
    except AuthenticationError as e:
        print("AuthenticationError:", e, flush=True)
        return 2
    with conn:
        first = client_initiate_authentication(user)
        conn.send_bytes(json.dumps({"user": user, "cnonce": first["client_nonce"]}).encode())
        server_first = json.loads(conn.recv_bytes())
        if "error" in server_first:
            print("REFUSED", server_first["error"], flush=True)
            return 2
        proof = client_generate_proof(
            user, password, server_first["salt"], server_first["iterations"],
            first["client_nonce"], server_first["combined_nonce"],
        )
        conn.send_bytes(json.dumps({"proof": proof["client_proof"]}).encode())
        server_final = json.loads(conn.recv_bytes())
        if "error" in server_final:
            print("REFUSED", server_final["error"], flush=True)
            return 2
        want = hmac.new(proof["server_key"], proof["auth_message"].encode(), "sha256").digest()
        if not hmac.compare_digest(base64.b64decode(server_final["signature"]), want):
            print("BAD SERVER SIGNATURE", flush=True)
            return 3
        conn.send_bytes(b"hello as " + user.encode())
        if conn.recv_bytes() != b"hello as " + user.encode():
            print("MISMATCH", flush=True)
            return 4
    print("OK", "%d.%d" % sys.version_info[:2], flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - report, exit 4
        print(type(e).__name__ + ":", e, flush=True)
        sys.exit(4)
