"""Near-duplicate prompts with MinHash + LSH.

Train/test decontamination (:mod:`.splits`) uses the vectorized signatures of
:mod:`.lsh` through :class:`SignatureStore` and :class:`NearDuplicateReference`;
preference-pair building (:mod:`.pairs`) uses the same signatures through
:func:`near_duplicate_leaders` (same shingles, same threshold: one MinHash in
the project).

A prompt's signature is the MinHash of its byte 5-grams (character shingles
survive small edits better than word n-grams on short prompts) after
:func:`~.text.normalize_near`. Everything is seeded, so the same text has the
same signature on every machine and every run. LSH only proposes candidates;
a candidate counts as a near duplicate when the signatures' estimated Jaccard
similarity is at least the threshold, so LSH's false positives never decide.
Empty texts have no shingles and are never near-duplicates of anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Hashable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .lsh import LshIndex, LshParams, band_hashes, low_bits, signatures
from .spill import SpilledRows, concat_draining
from ..identity import find_sorted, joined_keys
from ..threads import InOrder


@dataclass(frozen=True)
class NearDuplicateConfig:
    """``threshold``: estimated Jaccard similarity of shingle sets (0–1] at or above
    which two prompts are near duplicates. Texts are cut to ``max_chars``
    (the start of a prompt is what identifies it; this bounds the cost)."""

    threshold: float = 0.7
    num_perm: int = 128
    shingle_size: int = 5
    max_chars: int = 4000
    seed: int = 1
    # LSH bucket cap of the vectorized index (lib/dataset/lsh.py)
    cap: int = 8

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 16:
            raise ValueError(f"num_perm must be at least 16, got {self.num_perm}")
        if self.shingle_size < 1 or self.max_chars < 1:
            raise ValueError("shingle_size and max_chars must be positive")

    def spec(self) -> str:
        return f"minhash(j>={self.threshold},perm={self.num_perm},k={self.shingle_size})"

    def lsh_params(self) -> LshParams:
        bands, rows = _lsh_params(self.threshold, self.num_perm)
        return LshParams(
            num_perm=self.num_perm, bands=bands, rows=rows, shingle_size=self.shingle_size, seed=self.seed, cap=self.cap
        )


class _FirstArrivalIds:
    """Ids of distinct 16-byte digests, numbered in order of first arrival.

    Sorted numpy runs of (digest, id), merged as they grow (like an LSM tree): 24 bytes per
    distinct digest, where a dict of bytes keys took ~150."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.size = 0

    def assign(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(id of each digest, positions of the digests given an id now)``; the latter in id order."""
        ids = np.full(len(digests), -1, np.int64)
        for keys, values in self._runs:
            at, hit = find_sorted(keys, digests)
            ids[hit] = values[at[hit]]
        unseen = np.flatnonzero(ids < 0)
        if not len(unseen):
            return ids, unseen
        distinct, first, inverse = np.unique(digests[unseen], return_index=True, return_inverse=True)
        rank = np.empty(len(distinct), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(distinct))
        new_ids = self.size + rank
        ids[unseen] = new_ids[inverse.reshape(-1)]
        self.size += len(distinct)
        self._runs.append((distinct, new_ids))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            keys, values = self._runs.pop()
            older_keys, older_values = self._runs.pop()
            merged = np.concatenate([older_keys, keys])
            order = np.argsort(merged, kind="stable")
            self._runs.append((merged[order], np.concatenate([older_values, values])[order]))
        return ids, unseen[np.sort(first)]


@dataclass(frozen=True)
class StoredSignatures:
    """What :meth:`SignatureStore.finish` returns, one row per text id."""

    # Each in a temporary file of its own, read back a block of rows or a band at a time.
    full: SpilledRows  # uint32 [ids, num_perm]: what the persisted index holds
    low: SpilledRows  # uint8 [ids, num_perm]: the low bits (what verification compares)
    bands: SpilledRows  # uint32 [ids, bands]: LSH band hashes of the full signatures
    has: np.ndarray  # bool [ids]: False for a text with no shingle (in memory)


@dataclass(frozen=True)
class PreparedTexts:
    """A batch of texts as :meth:`SignatureStore.prepare` leaves them for :meth:`~SignatureStore.add_prepared`."""

    count: int  # texts in the batch
    rows: np.ndarray  # positions of the non-empty ones
    cut: pa.Array  # those texts, cut to max_chars
    digests: np.ndarray  # S16: their digests, which tell distinct texts apart


class SignatureStore:
    """Vectorized signatures of distinct normalized texts, hashed in chunks as they arrive.

    :meth:`add_batch` returns each text's id (-1 for an empty text); :meth:`finish`
    returns :class:`StoredSignatures`. Only the pending chunk of texts is held, never all
    of them; distinct texts are known by a 16-byte digest; signatures, their low bits and
    band hashes go to temporary files as they are made, so memory keeps ~25 bytes per
    distinct text (digest, id and a flag) where it kept ~230 with the low bits and band
    hashes in memory, and ~700 before that.
    """

    def __init__(self, config: NearDuplicateConfig, chunk: int = 2048) -> None:
        self.config = config
        self.params = config.lsh_params()
        self.chunk = chunk
        self._ids = _FirstArrivalIds()
        self._pending: list[pa.Array] = []  # distinct texts not hashed yet
        self._pending_rows = 0
        self._full = SpilledRows(dtype=np.uint32, row_shape=(config.num_perm,))
        self._low = SpilledRows(dtype=np.uint8, row_shape=(config.num_perm,))
        self._bands = SpilledRows(dtype=np.uint32, row_shape=(self.params.bands,))
        self._has: list[np.ndarray] = []
        self._hashing = InOrder(self._store)

    def add_batch(self, texts: pa.Array | Sequence[str | None]) -> np.ndarray:
        """The id of each text's signature (-1 for an empty or null text)."""
        return self.add_prepared(self.prepare(texts))

    def prepare(self, texts: pa.Array | Sequence[str | None]) -> PreparedTexts:
        """What :meth:`add_prepared` needs of ``texts``: reads only the config, so it may run
        in another thread while this store takes earlier batches."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        elif not isinstance(texts, pa.Array):
            texts = pa.array(texts, pa.string())
        sizes = np.asarray(pc.fill_null(pc.binary_length(texts), 0), np.int64)  # bytes, from the offsets
        rows = np.flatnonzero(sizes > 0)
        if not len(rows):
            return PreparedTexts(len(texts), rows, pa.array([], pa.string()), np.zeros(0, "S16"))
        cut = texts.take(pa.array(rows))
        if sizes.max() > self.config.max_chars:  # no text of at most max_chars bytes has more code points
            cut = pc.utf8_slice_codeunits(cut, 0, self.config.max_chars)  # code points, as str[:n]
        return PreparedTexts(len(texts), rows, cut, joined_keys([cut]))  # text.digest of each

    def add_prepared(self, prepared: PreparedTexts) -> np.ndarray:
        """The id of each prepared text's signature (-1 for an empty or null text)."""
        ids = np.full(prepared.count, -1, np.int64)
        if not len(prepared.rows):
            return ids
        found, first = self._ids.assign(prepared.digests)
        ids[prepared.rows] = found
        if len(first):
            self._pending.append(prepared.cut.take(pa.array(first)))
            self._pending_rows += len(first)
            if self._pending_rows >= self.chunk:
                self._flush()
        return ids

    def _flush(self) -> None:
        if self._pending:
            # hashed on the pool while later texts arrive; stored in the order the chunks were cut
            self._hashing.submit(_hash_chunk, pa.concat_arrays(self._pending), self.params)
            self._pending, self._pending_rows = [], 0

    def _store(self, hashed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        sig, low, bands, has = hashed
        self._full.append(sig)
        self._low.append(low)
        self._bands.append(bands)
        self._has.append(has)

    def finish(self) -> StoredSignatures:
        self._flush()
        self._hashing.drain()
        self._ids = _FirstArrivalIds()

        return StoredSignatures(self._full, self._low, self._bands, concat_draining(self._has, np.zeros(0, bool)))


def _hash_chunk(texts: pa.Array, params: LshParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(signatures, low bits, band hashes, has-signature) of a chunk of distinct texts."""
    sig, has = signatures(texts, params)
    return sig, low_bits(sig), band_hashes(sig, params), has


@dataclass(frozen=True)
class NearDuplicateReference:
    """Signatures of kept rows, split by role: what one cell publishes, or what all other cells did.

    Signatures are kept as their low bits (:func:`.lsh.low_bits`: what matching compares) with
    their band hashes; nothing else (no ids, no text)."""

    train_sig: np.ndarray
    train_bands: np.ndarray
    test_sig: np.ndarray
    test_bands: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_sig", low_bits(self.train_sig))
        object.__setattr__(self, "test_sig", low_bits(self.test_sig))

    @classmethod
    def from_rows(cls, sig: np.ndarray, bands: np.ndarray, is_test: np.ndarray) -> "NearDuplicateReference":
        return cls(sig[~is_test], bands[~is_test], sig[is_test], bands[is_test])

    @classmethod
    def concat(cls, parts: list["NearDuplicateReference"], num_perm: int, bands: int) -> "NearDuplicateReference":
        def cat(name: str, empty: np.ndarray) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if arrays else empty

        s, b = np.zeros((0, num_perm), np.uint8), np.zeros((0, bands), np.uint32)
        return cls(cat("train_sig", s), cat("train_bands", b), cat("test_sig", s), cat("test_bands", b))


def cross_split_matches(own: NearDuplicateReference, other: NearDuplicateReference, config: NearDuplicateConfig) -> int:
    """How many of ``own``'s signatures have a near duplicate in the other split of ``other``
    (own test vs other train, own train vs other test): 0 when the two are consistent."""
    params = config.lsh_params()
    found = 0
    for queries, query_bands, refs, ref_bands in (
        (own.test_sig, own.test_bands, other.train_sig, other.train_bands),
        (own.train_sig, own.train_bands, other.test_sig, other.test_bands),
    ):
        if len(queries) and len(refs):
            found += int(np.count_nonzero(LshIndex(refs, ref_bands, params).match(queries, query_bands, config.threshold) >= 0))
    return found


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)


@lru_cache(maxsize=None)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for LSH, tuned a little below the threshold so borderline pairs become
    candidates (verification then decides).

    The (b, r) with ``b·r ≤ num_perm`` that minimizes the mean of the false-positive and
    false-negative areas under the S-curve ``1 − (1 − s^r)^b`` (datasketch's rule, which
    chose these before: a test pins its choices). The integrands are polynomials of degree
    at most ``num_perm``, so Gauss–Legendre quadrature with 96 nodes (exact to degree 191)
    gives their integrals for every (b, r) at once."""
    target = max(0.05, threshold - 0.1)
    bands = np.repeat(np.arange(1, num_perm + 1), [num_perm // b for b in range(1, num_perm + 1)])
    rows = np.concatenate([np.arange(1, num_perm // b + 1) for b in range(1, num_perm + 1)])

    def area(lo: float, hi: float, false_negative: bool) -> np.ndarray:
        s = (hi - lo) / 2 * _NODES + (hi + lo) / 2
        candidate = 1 - (1 - s[None, :] ** rows[:, None].astype(float)) ** bands[:, None].astype(float)
        return (hi - lo) / 2 * ((1 - candidate if false_negative else candidate) * _WEIGHTS).sum(axis=1)

    error = 0.5 * area(0.0, target, False) + 0.5 * area(target, 1.0, True)
    best = int(np.argmin(error))  # the first minimum: the smallest b, then r, as datasketch's loop
    return int(bands[best]), int(rows[best])



def near_duplicate_leaders(texts: Sequence[str], scopes: Sequence[Hashable], config: NearDuplicateConfig) -> np.ndarray:
    """Greedy near-duplicate grouping, in the order given: text ``i`` joins the first earlier
    *leader* of the same scope whose signature is at least ``threshold`` similar, else it
    becomes a leader itself. Returns each text's leader index (its own for a leader).

    Signatures are computed for all texts at once (:func:`.lsh.signatures`); the LSH buckets
    hold leaders only, so a text is verified against the leaders it shares a band with. An
    empty text matches nothing and leads only itself."""
    leaders = np.arange(len(texts))
    if not len(texts):
        return leaders
    params = config.lsh_params()
    sig, has = signatures([text[: config.max_chars] for text in texts], params)
    bands = band_hashes(sig, params)
    buckets: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(has).tolist():
        keys = [(scopes[i], band, value) for band, value in enumerate(bands[i].tolist())]
        candidates = sorted({j for key in keys for j in buckets.get(key, ())})
        if candidates:
            found = np.asarray(candidates)
            similar = (sig[found] == sig[i]).mean(axis=1) >= config.threshold
            if similar.any():
                leaders[i] = found[int(np.argmax(similar))]
                continue
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return leaders
