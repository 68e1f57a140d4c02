"""Seeds derived from names, so every random stream is fixed by the config and independent of order."""

from __future__ import annotations

import hashlib


def derive_seed(*keys) -> int:
    """A 63-bit seed from any tuple of printable keys, stable across runs and platforms."""
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
