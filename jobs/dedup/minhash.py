"""MinHash signatures and LSH band keys, vectorised with numpy over a whole Arrow batch.

A text's shingles are its word n-grams (``ngram`` consecutive whitespace tokens of the
normalised text; a text shorter than ``ngram`` words is one shingle). Tokens are hashed once
per distinct token in the batch (64-bit BLAKE2b) and n-grams are combined from token hashes
with array arithmetic, so no Python loop runs per token or per row. A text that repeats an n-gram
keeps both copies here (MinHash is the same either way); set operations deduplicate.

Signatures use multiply-shift hashing, a 2-universal family that needs no modulo:
``h_i(x) = ((a_i * x + b_i) mod 2^64) >> 32`` with seeded odd 64-bit ``a_i`` and 64-bit
``b_i`` (``datasketch`` uses ``(a x + b) mod (2^61 - 1)``; both approximate random
permutations, and the modulo costs several times more in numpy). A row's signature is the
minimum per permutation over its shingles (``np.minimum.reduceat`` over the shingle matrix, in
blocks that bound memory). ``num_perm`` values are cut into ``bands`` bands of ``rows``
values; a band's key is a 64-bit polynomial hash of its values, so two texts are LSH
candidates when any band key is equal. The probability of that for texts of Jaccard ``s``
is ``1 - (1 - s^rows)^bands``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_HASH = np.uint64((1 << 32) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_VALUES = 1 << 20  # permutations x shingles per block: 8 MB of uint64, cache-friendly


@dataclass(frozen=True)
class Shingles:
    """Shingle hashes per text, in text order: text ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``
    (a repeated n-gram appears once per occurrence)."""

    offsets: np.ndarray
    hashes: np.ndarray

    def of(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def distinct(self) -> Shingles:
        """The same sets with each text's hashes sorted and repeats removed.

        >>> shingles(pa.array(["a b a b", "c"])).distinct().sizes.tolist()
        [2, 1]
        """
        owner = np.repeat(np.arange(len(self.offsets) - 1), self.sizes)
        order = np.lexsort((self.hashes, owner))
        rows, values = owner[order], self.hashes[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (values[1:] != values[:-1])
        counts = np.bincount(rows[first], minlength=len(self.offsets) - 1)
        return Shingles(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), values[first])


def _token_hashes(values: list[str | None]) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest()) for v in values],
        dtype=np.uint64,
    )


def shingles(texts: pa.Array, ngram: int = 2) -> Shingles:
    """Word ``ngram`` shingles of normalised ``texts``, as uint64 hashes.

    >>> s = shingles(pa.array(["a b c", "a b", "", "a b c"]), ngram=2)
    >>> s.sizes.tolist()
    [2, 1, 0, 2]
    >>> bool((s.of(0) == s.of(3)).all()), bool(np.isin(s.of(1), s.of(0)).all())
    (True, True)
    """
    if ngram < 1:
        raise ValueError(f"ngram must be at least 1, got {ngram}")
    n = len(texts)
    texts = texts.cast(pa.string())
    # An empty text has no tokens (splitting "" would give one empty token).
    texts = pc.if_else(pc.equal(pc.fill_null(texts, ""), ""), pa.scalar(None, pa.string()), texts)
    tokens = pc.utf8_split_whitespace(texts)
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    flat = tokens.flatten()
    if len(flat) == 0:
        return Shingles(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.uint64))
    encoded = pc.dictionary_encode(flat)
    token_h = _token_hashes(encoded.dictionary.to_pylist())[
        encoded.indices.to_numpy(zero_copy_only=False)
    ]
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(len(token_h), dtype=np.int64) - starts[owner]
    # n-gram at token i: tokens i..i+ngram-1 of the same text.
    span = min(ngram, int(lengths.max()))
    combined = token_h.copy()
    for shift in range(1, span):
        nxt = np.zeros_like(token_h)
        nxt[:-shift] = token_h[shift:]
        combined = combined * _MIX + nxt
    full = position + ngram <= lengths[owner]
    # A text shorter than ngram words: its whole token sequence is its one shingle.
    short = (lengths[owner] < ngram) & (position == 0)
    if short.any():
        short_rows = owner[short]
        whole = np.zeros(int(short.sum()), dtype=np.uint64)
        for k in range(int(lengths[short_rows].max())):
            has = lengths[short_rows] > k
            idx = starts[short_rows] + k
            value = np.where(has, token_h[np.minimum(idx, len(token_h) - 1)], np.uint64(0))
            whole = np.where(has, whole * _MIX + value, whole)
        combined = combined.copy()
        combined[short] = whole
    keep = full | short
    counts = np.bincount(owner[keep], minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Shingles(offsets, combined[keep])


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` coefficients of ``num_perm`` seeded hash functions (``a`` odd)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2)
    return a, b


def signatures(sets: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one row per text (``uint32``; an empty text's row is all 2^32-1).

    >>> s = shingles(pa.array(["a b c d", "a b c d", "x y z"]))
    >>> sig = signatures(s, 16, seed=1)
    >>> sig.shape, bool((sig[0] == sig[1]).all()), bool((sig[0] == sig[2]).all())
    ((3, 16), True, False)
    """
    a, b = permutations(num_perm, seed)
    n = len(sets.offsets) - 1
    out = np.full((n, num_perm), MAX_HASH, dtype=np.uint64)
    sizes = sets.sizes
    nonempty = np.flatnonzero(sizes > 0)
    if len(nonempty) == 0:
        return out.astype(np.uint32)
    per_block = max(_CHUNK_VALUES // num_perm, 1)
    shift = np.uint64(32)
    # One buffer for every block: a fresh 8 MB array per block costs its page faults again.
    buffer = np.empty(per_block * num_perm, dtype=np.uint64)
    i = 0
    while i < len(nonempty):
        # Take whole texts until the block holds per_block shingles (at least one text).
        first = sets.offsets[nonempty[i]]
        j = int(np.searchsorted(sets.offsets[nonempty + 1], first + per_block, side="right"))
        j = max(j, i + 1)
        rows = nonempty[i:j]
        begin, end = int(sets.offsets[rows[0]]), int(sets.offsets[rows[-1] + 1])
        width = end - begin
        if width <= per_block:
            permuted = buffer[: width * num_perm].reshape(num_perm, width)
        else:  # one text longer than a block
            permuted = np.empty((num_perm, width), dtype=np.uint64)
        np.multiply(a[:, None], sets.hashes[None, begin:end], out=permuted)
        permuted += b[:, None]
        permuted >>= shift
        starts = sets.offsets[rows] - begin
        out[rows] = np.minimum.reduceat(permuted, starts, axis=1).T
        i = j
    return out.astype(np.uint32)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One int64 key per (text, band): the polynomial hash of the band's ``rows`` values."""
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows exceed {sigs.shape[1]} permutations")
    cut = sigs[:, : bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    keys = np.zeros((len(sigs), bands), dtype=np.uint64)
    for r in range(rows):
        keys = keys * _MIX + cut[:, :, r] + np.uint64(1)
    # Mix in the band number so equal values in two bands are different keys.
    keys = keys ^ (np.arange(bands, dtype=np.uint64)[None, :] * _MIX)
    return keys.view(np.int64)


def optimal_bands(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5
) -> tuple[int, int]:
    """``(bands, rows)`` minimising the weighted areas of false positives below ``threshold``
    and false negatives above it (the criterion ``datasketch`` uses), by numerical integration.

    >>> optimal_bands(0.8, 128)
    (9, 13)
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    best: tuple[float, int, int] | None = None
    low = np.linspace(0.0, threshold, 201)
    high = np.linspace(threshold, 1.0, 201)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - low**r) ** b, low)
            fn = np.trapezoid((1 - high**r) ** b, high)
            error = false_positive_weight * fp + (1 - false_positive_weight) * fn
            if best is None or error < best[0] - 1e-12:
                best = (float(error), b, r)
    assert best is not None
    return best[1], best[2]


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that two texts of Jaccard ``similarity`` share at least one band key."""
    return float(1 - (1 - similarity**rows) ** bands)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of the sets of two hash arrays.

    >>> jaccard(np.array([1, 2, 3, 3]), np.array([2, 3, 4]))
    0.5
    """
    a, b = np.unique(a), np.unique(b)
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
