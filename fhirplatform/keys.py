"""Keys that deployments may leave unconfigured: the RSA key the OAuth provider signs ID tokens with,
the key of property-filter pseudonyms and the key the audit log's row hashes are keyed with (HMAC,
audit/services.py).

Each is read from a file, generated there (mode 0600) when the file does not exist yet (the embedded
mode keeps them under var/, which is not committed). Several servers must share one key (a
pseudonym, like a signature, must be the same whichever server answers): production sets them in
the environment or points every server at the same file. Kept apart from the settings module so
that importing settings stays free of side effects other than this one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def signing_key(path: str) -> str:
    """The PEM of the RSA key in `path`, generated there on first use."""
    key_file = Path(path)
    if key_file.exists():
        return key_file.read_text()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return _write_once(key_file, pem)


def secret_key(path: str) -> str:
    """A 256-bit random secret (64 hex digits) kept in `path`, generated there on first use."""
    key_file = Path(path)
    if not key_file.exists():
        _write_once(key_file, secrets.token_hex(32) + "\n")
    return key_file.read_text().strip()


def _write_once(key_file: Path, text: str) -> str:
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
