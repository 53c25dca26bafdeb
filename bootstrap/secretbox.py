"""Secrets at rest: AES-256-GCM under a master key kept outside the database.

Each sealed blob is ``version (1) | key id (8) | nonce (12) | ciphertext+tag``. The key id lets a
rotation tell which key sealed a blob; the ``context`` string is authenticated data, so a blob
copied into another row or column does not decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError

_VERSION = b"\x01"
KEY_BYTES = 32


class SecretError(Exception):
    """A sealed secret cannot be opened (wrong master key, tampering, or a different context)."""


def key_id(key: bytes) -> bytes:
    """Short public identifier of a master key (not the key, not reversible)."""
    return hashlib.sha256(b"lwm2m-bootstrap master key id\x00" + key).digest()[:8]


class SecretBox:
    """Seals and opens secrets with one master key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"master key: expected {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (for example ``"certificate_issuers:<id>"``)."""
        nonce = os.urandom(12)
        return _VERSION + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, blob: bytes, *, context: str) -> bytes:
        """Decrypt a blob made by :meth:`seal` with the same key and context."""
        if len(blob) < 1 + 8 + 12 + 16 or blob[:1] != _VERSION:
            raise SecretError("not a sealed secret")
        if blob[1:9] != self.key_id:
            raise SecretError("sealed under another master key")
        try:
            return self._aead.decrypt(blob[9:21], blob[21:], context.encode())
        except InvalidTag:
            raise SecretError("secret failed authentication (tampered, or another context)") from None

    def seal_json(self, value: dict[str, Any], *, context: str) -> bytes:
        """Seal a JSON object (issuer credentials)."""
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), context=context)

    def open_json(self, blob: bytes, *, context: str) -> dict[str, Any]:
        """Open a blob sealed by :meth:`seal_json`."""
        value = json.loads(self.open(blob, context=context))
        if not isinstance(value, dict):
            raise SecretError("sealed value is not an object")
        return value


def decode_key(text: str, *, source: str) -> bytes:
    """Decode a base64 master key, naming ``source`` in the error."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{source}: master key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{source}: master key must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def load_master_key(explicit: str | None, path: Path, *, create: bool) -> bytes:
    """Return the master key: ``explicit`` (base64) if given, else read ``path``.

    With ``create`` and no file, a random key is written with mode 0600 (the embedded default).
    """
    if explicit:
        return decode_key(explicit, source="master key (environment)")
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"master key file {path} is readable by others (mode {mode:o}); chmod 600 it")
        return decode_key(path.read_text(), source=str(path))
    if not create:
        raise ConfigError(f"master key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temporary file, then link it into place: link() fails if another process
    # won the race, and the key file is never seen half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return decode_key(path.read_text(), source=str(path))
