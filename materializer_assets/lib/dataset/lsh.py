"""Vectorized MinHash + LSH over byte 5-gram shingles (numpy, no per-shingle Python).

**Signatures.** A text (already :func:`~.text.normalize_near`-ed and cut to
``max_chars``) is the set of its byte ``k``-grams. Every shingle is hashed once
(splitmix64 of the k bytes and the seed) and, as in *one-permutation hashing*,
the top bits of the hash pick one of ``num_perm`` bins and the low 32 bits are
its value; a text's signature is the minimum value of each bin. Empty bins
(texts with fewer shingles than bins) are filled by rotation from the next
non-empty bin to the right, plus a constant per step (Shrivastava & Li's
densification), so two signatures agree on a bin with probability ≈ the
Jaccard similarity of the shingle sets. A batch of texts is hashed with a
handful of numpy operations over the concatenated UTF-8 bytes, so the cost is
linear in the bytes (not in bytes × permutations, as classic MinHash is). A
text with no byte has no signature and matches nothing. Everything is seeded:
the same text has the same signature on every machine, run and cell, which is
what lets signatures be persisted and compared across cells.

**LSH with candidate caps.** The signature is cut into ``bands`` bands of
``rows`` values; two texts are candidates when some band hashes equal. A
bucket (one band hash) keeps at most ``cap`` reference members (the first
ones in the order given); a query is verified against the capped members of
each of its buckets, band after band, and stops at the first verified match
(estimated Jaccard ≥ threshold). So 90 % of prompts sharing one template —
one huge bucket in every band — cost at most ``bands × cap`` comparisons per
query, not one per reference row: linear. The price of the cap: a query whose
only near duplicates sit beyond the first ``cap`` members of every bucket it
shares is missed; members of one bucket agree on a whole band, so in practice
they are near duplicates of one another and of the query alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..threads import map_in_threads
from .spill import SpilledRows, band_column

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint64(1 << 32)
_MASK32 = np.uint64(0xFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class LshParams:
    num_perm: int = 128
    bands: int = 16
    rows: int = 8
    shingle_size: int = 5
    seed: int = 1
    cap: int = 8

    def __post_init__(self) -> None:
        if self.num_perm < 16 or self.num_perm & (self.num_perm - 1):
            raise ValueError(f"num_perm must be a power of two ≥ 16, got {self.num_perm}")
        if self.bands * self.rows > self.num_perm or self.bands < 1 or self.rows < 1:
            raise ValueError("bands × rows must be at most num_perm")
        if not 1 <= self.shingle_size <= 8:
            raise ValueError("shingle_size must be between 1 and 8 bytes")
        if self.cap < 1:
            raise ValueError("cap must be positive")


_BAND_CHUNK_ROWS = 1 << 14
# Queries verified at a time: their signatures and those of the references they meet (at most
# `cap` each per band) are gathered once per block (~4 MB of queries, at most ~32 MB of references).
_VERIFY_BLOCK_QUERIES = 1 << 15
_CHUNK_BYTES = 1 << 19  # work in pieces that stay in cache (3× faster per byte than 16 MB pieces)


def signatures(texts: list[str] | pa.Array, params: LshParams) -> tuple[np.ndarray, np.ndarray]:
    """``(signatures uint32 [n, num_perm], has_signature bool [n])`` of ``texts``."""
    array = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.large_string())
    array = array.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], np.int64, count=len(array) + 1, offset=array.offset * 8)
    if len(array) > 1 and offsets[-1] - offsets[0] > _CHUNK_BYTES:
        cuts = np.searchsorted(offsets - offsets[0], np.arange(_CHUNK_BYTES, offsets[-1] - offsets[0], _CHUNK_BYTES))
        bounds = sorted({0, len(array), *[int(c) for c in cuts if 0 < c < len(array)]})
        if len(bounds) > 2:
            # texts are hashed independently: the pieces run on all cores, joined in order
            parts = list(map_in_threads(lambda bound: _signatures(array.slice(bound[0], bound[1] - bound[0]), params),
                                        zip(bounds, bounds[1:])))
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _signatures(array, params)


def _mix_in_place(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """:func:`_mix` into ``x`` itself (no temporaries: on a chunk of bytes the allocations cost more than the math)."""
    for shift, multiplier in ((30, _M1), (27, _M2), (31, None)):
        np.right_shift(x, np.uint64(shift), out=scratch)
        np.bitwise_xor(x, scratch, out=x)
        if multiplier is not None:
            np.multiply(x, multiplier, out=x)
    return x


def _signatures(array: pa.Array, params: LshParams) -> tuple[np.ndarray, np.ndarray]:
    n = len(array)
    p = params.num_perm
    if n == 0:
        return np.zeros((0, p), np.uint32), np.zeros(0, bool)
    bufs = array.buffers()
    offsets = np.frombuffer(bufs[1], np.int64, count=n + 1, offset=array.offset * 8)
    start, end = offsets[:-1], offsets[1:]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    start, end = start - offsets[0], end - offsets[0]
    k = params.shingle_size
    lengths = end - start
    has = lengths > 0
    size = len(data)
    padded = np.zeros(size + 8, np.uint8)
    padded[:size] = data
    # The k bytes from each position as one little-endian integer: the 8 bytes there, read through
    # a 1-byte-strided view, masked to k bytes (one pass instead of k shifts and ors).
    windows = np.ndarray((size,), "<u8", padded, 0, (1,)) & np.uint64((1 << (8 * k)) - 1)
    valid = np.ones(size, bool)
    # the last k-1 positions of each text start no full shingle
    tail = (end[:, None] - np.arange(1, k, dtype=np.int64)[None, :]).ravel()
    valid[tail[(tail >= np.repeat(start, k - 1)) & (tail >= 0)]] = False
    short = np.flatnonzero(has & (lengths < k))
    if len(short):  # a text shorter than k is one shingle: its bytes, zero-padded
        first = start[short]
        value = np.zeros(len(short), np.uint64)
        for j in range(k):
            inside = first + j < end[short]
            value |= np.where(inside, padded[np.minimum(first + j, size)], 0).astype(np.uint64) << np.uint64(8 * j)
        windows[first] = value
        valid[first] = True
    h = windows
    h ^= _mix(np.full(1, params.seed, np.uint64) * _GOLDEN)
    scratch = np.empty_like(h)
    _mix_in_place(h, scratch)
    bits = p.bit_length() - 1
    index_type = np.int32 if (n + 1) * p < 2**31 else np.int64
    # Positions that start no shingle go to a spare row n, cut off below (cheaper than compressing).
    base = np.repeat(np.arange(n, dtype=index_type) * index_type(p), lengths)
    base[~valid] = n * p
    key = np.right_shift(h, np.uint64(64 - bits), out=scratch).astype(index_type)
    key += base
    del base
    np.bitwise_and(h, _MASK32, out=h)
    flat = np.full((n + 1) * p, _EMPTY, np.uint64)
    np.minimum.at(flat, key, h)
    sig = flat[: n * p].reshape(n, p)
    empty = sig == _EMPTY
    rows_with_gaps = np.flatnonzero(empty.any(axis=1) & has)
    if len(rows_with_gaps):
        original = sig[rows_with_gaps]
        filled = original.copy()
        todo = filled == _EMPTY
        for step in range(1, p):
            if not todo.any():
                break
            source = np.roll(original, -step, axis=1)
            take = todo & (source != _EMPTY)
            filled[take] = (source[take] + np.uint64((step * 0x9E3779B97F4A7C15) & 0xFFFFFFFF)) & _MASK32
            todo &= ~take
        sig[rows_with_gaps] = filled
    sig[~has] = 0
    return sig.astype(np.uint32), has


def band_hashes(sig: np.ndarray, params: LshParams) -> np.ndarray:
    """uint32 [n, bands]: one hash per band of each signature (the band index is mixed in; the
    low 32 bits of the mix: two unrelated bands share a bucket with probability 2⁻³², and a
    candidate is verified anyway)."""
    n = sig.shape[0]
    out = np.empty((n, params.bands), np.uint32)
    # In row chunks: a uint64 copy of all signatures would double a million-row cell's.
    for start in range(0, n, _BAND_CHUNK_ROWS):
        values = sig[start : start + _BAND_CHUNK_ROWS].astype(np.uint64)
        rows = len(values)
        for band in range(params.bands):
            h = np.full(rows, _mix(np.full(1, band + 1, np.uint64) * _GOLDEN)[0], np.uint64)
            for col in range(band * params.rows, (band + 1) * params.rows):
                h = _mix(h ^ values[:, col])
            out[start : start + rows, band] = h & _MASK32
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of paired signatures (rows of ``a`` and ``b``): the share of equal bins."""
    return (a == b).mean(axis=-1)


def low_bits(sig: np.ndarray) -> np.ndarray:
    """The low 8 bits of each bin (b-bit minwise hashing, Li & König 2010): what
    verification compares, at a quarter of the memory of the 32-bit signature."""
    return sig if sig.dtype == np.uint8 else (sig & np.asarray(0xFF, sig.dtype)).astype(np.uint8)


def agreement_needed(threshold: float, dtype: np.dtype) -> float:
    """The share of equal bins that means an estimated Jaccard similarity ≥ ``threshold``. Bins of
    b bits whose minima differ still agree by chance (probability 2⁻ᵇ), so the share expected at
    similarity J is J + (1 − J)·2⁻ᵇ; for 32-bit bins that term is negligible."""
    bits = np.dtype(dtype).itemsize * 8
    return threshold if bits >= 32 else threshold + (1.0 - threshold) * 2.0**-bits


class LshIndex:
    """Reference signatures bucketed by band, each bucket capped at ``params.cap`` members.

    A band's buckets are sorted when :meth:`match` reaches that band and dropped after it: the
    index holds one band's buckets at a time (12 bytes per reference row), not all of them.
    Signatures and band hashes may be arrays or :class:`~.spill.SpilledRows` on disk (the
    planner's own, which it never holds in memory)."""

    def __init__(
        self,
        sig: np.ndarray | SpilledRows,
        bands: np.ndarray | SpilledRows,
        params: LshParams,
        rows: np.ndarray | None = None,
    ) -> None:
        """``rows``: only these rows of ``sig``/``bands`` are references (no copy of the signatures);
        :meth:`match` still answers with indices into ``sig``."""
        self.params = params
        self.sig = sig
        self._bands = bands
        self._rows = rows
        self._size = len(sig) if rows is None else len(rows)

    def __len__(self) -> int:
        return self._size

    def _buckets(self, band: int) -> tuple[np.ndarray, np.ndarray]:
        """``(sorted band hashes, member row of each)`` of one band, the first ``cap`` members of each bucket."""
        rows = self._rows
        keys = band_column(self._bands, band, rows)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        # rank of each member within its bucket; keep the first `cap`
        new = np.ones(len(sorted_keys), bool)
        new[1:] = sorted_keys[1:] != sorted_keys[:-1]
        group_start = np.maximum.accumulate(np.where(new, np.arange(len(new)), 0)) if len(new) else new
        keep = (np.arange(len(new)) - group_start) < self.params.cap
        members = order[keep] if rows is None else rows[order[keep]]
        return sorted_keys[keep], members

    def match(
        self,
        sig: np.ndarray | SpilledRows,
        bands: np.ndarray | SpilledRows,
        threshold: float,
        rows: np.ndarray | None = None,
        chunk: int = 1 << 20,
    ) -> np.ndarray:
        """For each query row (of ``sig``, or only ``rows`` of it: no copy), the index of one
        reference row at least ``threshold`` similar, else -1."""
        if rows is None:
            rows = np.arange(len(sig))
        n = len(rows)
        found = np.full(n, -1, np.int64)
        if n == 0 or self._size == 0:
            return found
        if sig.dtype != self.sig.dtype:
            raise ValueError(f"query signatures of {sig.dtype} against reference signatures of {self.sig.dtype}")
        needed = agreement_needed(threshold, sig.dtype)
        for band in range(self.params.bands):
            pending = np.flatnonzero(found < 0)
            if len(pending) == 0:
                break
            keys, members = self._buckets(band)
            q = band_column(bands, band, rows[pending])
            lo = np.searchsorted(keys, q, "left")
            counts = np.searchsorted(keys, q, "right") - lo
            hit = counts > 0
            pending, lo, counts = pending[hit], lo[hit], counts[hit]
            # a block of queries at a time: their pairs, and the signatures verification compares
            for start in range(0, len(pending), _VERIFY_BLOCK_QUERIES):
                block = slice(start, start + _VERIFY_BLOCK_QUERIES)
                block_counts = counts[block]
                query = np.repeat(pending[block], block_counts)
                offsets = np.repeat(lo[block] - np.concatenate(([0], np.cumsum(block_counts)[:-1])), block_counts)
                ref = members[np.arange(len(query)) + offsets]
                self._verify(found, query, ref, sig, rows, needed, chunk)
        return found

    def _verify(self, found, query, ref, sig, rows, needed: float, chunk: int) -> None:
        """Set ``found[q]`` to the first ``ref`` of each query ``q`` whose signatures are at least
        ``needed`` alike (pairs in order; a query already found keeps its answer). The signatures
        of the queries and of the distinct references they meet are read once (they may be on
        disk: :class:`~.spill.SpilledRows`) and compared ``chunk`` bytes of pairs at a time."""
        queries, query_at = np.unique(query, return_inverse=True)
        refs, ref_at = np.unique(ref, return_inverse=True)
        query_sig = sig[rows[queries]]
        ref_sig = self.sig[refs]
        ok = np.empty(len(query), bool)
        pairs_per_chunk = max(1, chunk // max(1, self.params.num_perm))
        for s in range(0, len(query), pairs_per_chunk):
            e = s + pairs_per_chunk
            ok[s:e] = similarity(query_sig[query_at[s:e]], ref_sig[ref_at[s:e]]) >= needed
        qs, rs = query[ok], ref[ok]
        # first verified reference per query (keep an earlier band's answer)
        fresh = found[qs] < 0
        found[qs[fresh][::-1]] = rs[fresh][::-1]
