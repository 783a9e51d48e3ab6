"""Verifies the Addon-Signature header of a provisioning request (Python 3, standard library only).

    python3 verify_signature.py HEADER < body    # PROVISIONER_SIGNING_SECRET in the environment
"""
import hashlib
import hmac
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    timestamp = next((value for key, value in fields if key == "t"), "")
    if not timestamp.isdigit():
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    signed = any(hmac.compare_digest(expected, value) for key, value in fields if key == "v1")
    return signed and abs(time.time() - int(timestamp)) <= tolerance


if __name__ == "__main__":
    import os
    import sys

    valid = verify(os.environ["PROVISIONER_SIGNING_SECRET"], sys.argv[1], sys.stdin.buffer.read())
    print("valid" if valid else "invalid")
    sys.exit(0 if valid else 1)
