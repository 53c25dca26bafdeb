"""A pool of device keys, so a large simulated fleet costs little to create.

The pool can be cached on disk (``KeyPool(n, cache_dir=DIR)``): ``DIR/keys-p256.pem`` holds PKCS#8
PEM keys, one after the other. What exists is loaded, missing keys are generated and the file is
rewritten atomically (mode 0600). A cache file that does not parse raises :class:`KeyCacheError`
naming the file; it is never silently replaced, because the keys are the simulated devices'
identities (delete the file to start afresh).

The cache gives stable device keys across runs and across simulator processes. It does not save
CPU: loading a P-256 key from PEM (about 20 microseconds) costs as much as generating one.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: File name of the cache inside the cache directory.
CACHE_FILE = "keys-p256.pem"

_PEM_BLOCK = re.compile(rb"-----BEGIN PRIVATE KEY-----\r?\n.*?-----END PRIVATE KEY-----\r?\n?", re.DOTALL)


class KeyCacheError(ValueError):
    """The key cache file exists but is not a list of P-256 PKCS#8 PEM keys."""


class KeyPool:
    """``size`` P-256 keys handed out round-robin (device ``i`` gets key ``i % size``).

    With ``cache_dir``, the first ``size`` keys of ``cache_dir/keys-p256.pem`` are used and the
    file is extended (atomically) when it holds fewer; ``loaded`` and ``generated`` tell how many
    keys came from where.
    """

    def __init__(self, size: int, cache_dir: Path | None = None) -> None:
        if size < 1:
            raise ValueError("key pool size must be at least 1")
        self.loaded = 0
        self.generated = 0
        self._keys: list[ec.EllipticCurvePrivateKey] = []
        if cache_dir is not None:
            self._keys = load_keys(cache_dir / CACHE_FILE, limit=size)
            self.loaded = len(self._keys)
        missing = size - len(self._keys)
        if missing > 0:
            self._keys += [ec.generate_private_key(ec.SECP256R1()) for _ in range(missing)]
            self.generated = missing
            if cache_dir is not None:
                save_keys(cache_dir / CACHE_FILE, self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def key_for(self, index: int) -> ec.EllipticCurvePrivateKey:
        """The key of device ``index``."""
        return self._keys[index % len(self._keys)]


def load_keys(path: Path, *, limit: int | None = None) -> list[ec.EllipticCurvePrivateKey]:
    """The keys in a cache file (at most ``limit``); an empty list if it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    blocks = _PEM_BLOCK.findall(data)
    if _PEM_BLOCK.sub(b"", data).strip():
        raise KeyCacheError(f"key cache {path} holds something other than PEM private keys; delete it")
    keys: list[ec.EllipticCurvePrivateKey] = []
    for number, block in enumerate(blocks[:limit] if limit is not None else blocks, start=1):
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except (ValueError, TypeError):
            raise KeyCacheError(f"key cache {path}: key {number} does not parse; delete the file") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise KeyCacheError(f"key cache {path}: key {number} is not a P-256 key; delete the file")
        keys.append(key)
    return keys


def save_keys(path: Path, keys: list[ec.EllipticCurvePrivateKey]) -> None:
    """Write ``keys`` to ``path`` atomically (temporary file in the same directory, then rename), 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for key in keys
    )
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
