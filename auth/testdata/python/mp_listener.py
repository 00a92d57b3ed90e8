"""Python side of auth's interop tests: a multiprocessing.connection Listener.

Usage: mp_listener.py, with the authkey as hex on stdin (never argv).
Prints "PORT n", accepts one connection, echoes every message until EOF,
then prints "OK count".
Exit status: 0 OK, 2 AuthenticationError, 3 other failure.
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener


def main():
    key = bytes.fromhex(sys.stdin.readline().strip())
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        print("PORT", listener.address[1], flush=True)
        try:
            conn = listener.accept()
        except AuthenticationError as e:
            print("AuthenticationError:", e, flush=True)
            return 2
        except (EOFError, OSError) as e:
            print(type(e).__name__ + ":", e, flush=True)
            return 3
        with conn:
            count = 0
            while True:
                try:
                    msg = conn.recv_bytes()
                except EOFError:
                    break
                conn.send_bytes(msg)
                count += 1
    print("OK", count, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
