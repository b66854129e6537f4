"""Near-duplicate detection with MinHash over word 5-gram shingles (deterministic, numpy only).

Two documents whose estimated Jaccard similarity of shingle sets is >= ``threshold`` are near duplicates; the
builder drops a training document that is a near duplicate of a test document, so the held-out set never leaks.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)
_N_PERM = 64
_BANDS = 16  # 16 bands x 4 rows: pairs at Jaccard 0.8 collide with probability > 0.99
_WORD = re.compile(r"\w+")
_rng = np.random.default_rng(20210202)
_A = _rng.integers(1, (1 << 31) - 1, size=_N_PERM, dtype=np.uint64)
_B = _rng.integers(0, (1 << 31) - 1, size=_N_PERM, dtype=np.uint64)


def minhash(text: str, ngram: int = 5) -> np.ndarray:
    """The MinHash signature (``_N_PERM`` uint64) of ``text``'s lower-cased word n-gram set."""
    words = _WORD.findall(text.lower())
    if len(words) < ngram:
        shingles = {" ".join(words)}
    else:
        shingles = {" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)}
    hashes = np.fromiter((zlib.crc32(s.encode()) for s in shingles), dtype=np.uint64, count=len(shingles))
    # 32-bit hashes times 31-bit coefficients stay below 2**63: no overflow before the modulus
    return ((hashes[:, None] * _A[None, :] + _B[None, :]) % _PRIME).min(axis=0)


def near_duplicates(train: list[np.ndarray], test: list[np.ndarray], threshold: float = 0.8) -> set[int]:
    """Indices of ``train`` signatures whose estimated Jaccard with some ``test`` signature is >= threshold."""
    rows = _N_PERM // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = {}
    for j, sig in enumerate(test):
        for band in range(_BANDS):
            buckets.setdefault((band, sig[band * rows:(band + 1) * rows].tobytes()), []).append(j)
    found: set[int] = set()
    for i, sig in enumerate(train):
        candidates: set[int] = set()
        for band in range(_BANDS):
            candidates.update(buckets.get((band, sig[band * rows:(band + 1) * rows].tobytes()), ()))
        if any(float(np.mean(sig == test[j])) >= threshold for j in candidates):
            found.add(i)
    return found
