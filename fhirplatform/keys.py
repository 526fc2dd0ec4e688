"""Keys for deployments that do not configure them: the RSA key the OAuth provider signs ID tokens
with, and the secret the audit log's row hashes are keyed with (HMAC, audit/services.py).

Read from a file, generated there (mode 0600) when the file does not exist yet. Kept apart from the
settings module so that importing settings stays free of side effects other than these.
"""

from __future__ import annotations

import os
from pathlib import Path


def signing_key(path: str) -> str:
    key_file = Path(path)
    if key_file.exists():
        return key_file.read_text()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return _create_once(key_file, pem)


def audit_key(path: str) -> str:
    """The audit log's HMAC key (64 hex digits, 256 bits) from `path`, generated there if missing.

    Only for the embedded mode and single-host deployments: every process that writes or verifies
    the log must use the same key, so several hosts share one given in FHIR_AUDIT_KEY instead."""
    key_file = Path(path)
    if not key_file.exists():
        import secrets

        _create_once(key_file, secrets.token_hex(32) + "\n")
    return key_file.read_text().strip()


def _create_once(key_file: Path, text: str) -> str:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # Write beside and rename, so two processes starting together both end with one whole key.
    partial = key_file.with_name(f".{key_file.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    try:
        os.link(partial, key_file)  # fails if another process won the race; keep its key
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return key_file.read_text()
