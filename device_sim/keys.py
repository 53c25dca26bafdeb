"""A pool of pre-generated device keys, so a large simulated fleet costs little to create."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec


class KeyPool:
    """``size`` P-256 keys handed out round-robin (device ``i`` gets key ``i % size``)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("key pool size must be at least 1")
        self._keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(size)]

    def __len__(self) -> int:
        return len(self._keys)

    def key_for(self, index: int) -> ec.EllipticCurvePrivateKey:
        """The key of device ``index``."""
        return self._keys[index % len(self._keys)]
