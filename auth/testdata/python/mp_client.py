"""Python side of auth's interop tests: a multiprocessing.connection Client.

Usage: mp_client.py PORT, with the authkey as hex on stdin (never argv).
Sends two messages (one over 64 KiB), expects each echoed back, prints OK.
Exit status: 0 OK, 1 wrong echo, 2 AuthenticationError, 3 other failure.
"""
import os
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client


def main():
    key = bytes.fromhex(sys.stdin.readline().strip())
    port = int(sys.argv[1])
    try:
        conn = Client(("127.0.0.1", port), authkey=key)
    except AuthenticationError as e:
        print("AuthenticationError:", e, flush=True)
        return 2
    except (EOFError, OSError) as e:
        print(type(e).__name__ + ":", e, flush=True)
        return 3
    with conn:
        for msg in (b"hello from python", os.urandom(100 * 1024)):
            conn.send_bytes(msg)
            got = conn.recv_bytes()
            if got != msg:
                print("MISMATCH", len(msg), len(got), flush=True)
                return 1
    print("OK", "%d.%d" % sys.version_info[:2], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
