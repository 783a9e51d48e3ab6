"""The Addon-Signature header both ways (Python 3, standard library only).

    python3 verify_signature.py HEADER < body           # verify a request from the stack
    python3 verify_signature.py --sign METHOD PATH < body # sign your call to the stack

PROVISIONER_SIGNING_SECRET in the environment. The stack signs "t.body" (its
calls go to your one endpoint); your calls to the stack sign "t.METHOD.path.body",
so a signature names the resource it is for (docs/provisioner.md, "The signature").
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


def sign_call(secret: str, method: str, path: str, body: bytes, timestamp: int | None = None) -> str:
    """The header for your call to the stack, e.g. POST /vendor/resources/{id}/provisioned."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    text = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return f"t={timestamp},v1=" + hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


if __name__ == "__main__":
    import os
    import sys

    secret = os.environ["PROVISIONER_SIGNING_SECRET"]
    if sys.argv[1] == "--sign":
        timestamp = int(os.environ["SIGNATURE_TIME"]) if "SIGNATURE_TIME" in os.environ else None
        print(sign_call(secret, sys.argv[2], sys.argv[3], sys.stdin.buffer.read(), timestamp))
        sys.exit(0)
    valid = verify(secret, sys.argv[1], sys.stdin.buffer.read())
    print("valid" if valid else "invalid")
    sys.exit(0 if valid else 1)
