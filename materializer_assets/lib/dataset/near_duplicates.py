"""Near-duplicate prompts with MinHash + LSH.

Train/test decontamination (:mod:`.splits`) uses the vectorized signatures of
:mod:`.lsh` through :class:`SignatureStore` and :class:`NearDuplicateReference`
(same shingles, same threshold); :class:`MinHasher` and
:class:`NearDuplicateIndex` (datasketch, one text at a time) remain for the
small groups of preference-pair building (:mod:`.pairs`).

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
from typing import Hashable

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from .lsh import LshParams, signatures
from .text import digest


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


class SignatureStore:
    """Vectorized signatures of distinct normalized texts, hashed in chunks as they arrive.

    :meth:`add` returns the text's id (-1 for an empty text); :meth:`finish`
    returns ``(signatures [ids, num_perm], has_signature [ids])``. Only the
    pending chunk of texts is held, never all of them.
    """

    def __init__(self, config: NearDuplicateConfig, chunk: int = 8192) -> None:
        self.config = config
        self.params = config.lsh_params()
        self.chunk = chunk
        self._ids: dict[bytes, int] = {}
        self._pending: list[str] = []
        self._sigs: list[np.ndarray] = []
        self._has: list[np.ndarray] = []

    def add(self, text: str) -> int:
        if not text:
            return -1
        text = text[: self.config.max_chars]
        key = digest(text)
        found = self._ids.get(key)
        if found is not None:
            return found
        found = self._ids[key] = len(self._ids)
        self._pending.append(text)
        if len(self._pending) >= self.chunk:
            self._flush()
        return found

    def _flush(self) -> None:
        if self._pending:
            sig, has = signatures(self._pending, self.params)
            self._sigs.append(sig)
            self._has.append(has)
            self._pending = []

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        self._ids = {}
        if not self._sigs:
            return np.zeros((0, self.config.num_perm), np.uint32), np.zeros(0, bool)
        return np.concatenate(self._sigs), np.concatenate(self._has)


@dataclass(frozen=True)
class NearDuplicateReference:
    """Signatures of kept rows, split by role: what one cell publishes, or what all other cells did.

    ``*_group`` is an opaque group id per signature (in a plan: an index into its
    group names; in the persisted index: the salted ``split_key``), kept so
    the rows of an erased user can be removed."""

    train_sig: np.ndarray
    train_bands: np.ndarray
    train_group: np.ndarray
    test_sig: np.ndarray
    test_bands: np.ndarray
    test_group: np.ndarray

    @classmethod
    def from_rows(cls, sig: np.ndarray, bands: np.ndarray, is_test: np.ndarray, group: np.ndarray) -> "NearDuplicateReference":
        return cls(sig[~is_test], bands[~is_test], group[~is_test], sig[is_test], bands[is_test], group[is_test])

    @classmethod
    def concat(cls, parts: list["NearDuplicateReference"], num_perm: int, bands: int) -> "NearDuplicateReference":
        def cat(name: str, empty: np.ndarray) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if arrays else empty

        s, b, g = np.zeros((0, num_perm), np.uint32), np.zeros((0, bands), np.uint64), np.zeros(0, object)
        return cls(cat("train_sig", s), cat("train_bands", b), cat("train_group", g), cat("test_sig", s), cat("test_bands", b), cat("test_group", g))


class MinHasher:
    """Seeded MinHash signatures of normalized texts, cached by text."""

    def __init__(self, config: NearDuplicateConfig) -> None:
        self.config = config
        self._template = MinHash(num_perm=config.num_perm, seed=config.seed)
        self._cache: dict[bytes, MinHash | None] = {}

    def shingles(self, text: str) -> set[bytes]:
        data = text[: self.config.max_chars].encode("utf-8", "surrogatepass")
        k = self.config.shingle_size
        if len(data) <= k:
            return {data} if data else set()
        return {data[i : i + k] for i in range(len(data) - k + 1)}

    def cached(self, key: bytes) -> MinHash | None:
        """The signature computed earlier for the text whose :func:`~.text.digest` is ``key``."""
        return self._cache[key]

    def signature(self, text: str) -> MinHash | None:
        """The MinHash of a normalized text, or None for an empty text."""
        key = digest(text)
        if key in self._cache:
            return self._cache[key]
        shingles = self.shingles(text)
        if not shingles:
            signature = None
        else:
            signature = MinHash(
                num_perm=self.config.num_perm,
                hashfunc=xxhash.xxh32_intdigest,
                permutations=self._template.permutations,
                scheme=self._template.scheme,
            )
            signature.update_batch(shingles)
        self._cache[key] = signature
        return signature


def similarity(a: MinHash, b: MinHash) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a.hashvalues == b.hashvalues)) / len(a.hashvalues)


@lru_cache(maxsize=None)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for LSH, tuned a little below the threshold so borderline
    pairs become candidates (verification then decides). datasketch finds them
    by numerical integration (~40 ms), so they are computed once per setting."""
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm)
    return lsh.b, lsh.r


class NearDuplicateIndex:
    """Signatures indexed by LSH; :meth:`matches` returns the verified near duplicates."""

    def __init__(self, config: NearDuplicateConfig) -> None:
        self.config = config
        self._lsh = MinHashLSH(num_perm=config.num_perm, params=_lsh_params(config.threshold, config.num_perm))
        self._signatures: dict[Hashable, MinHash] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def add(self, key: Hashable, signature: MinHash | None) -> None:
        if signature is None or key in self._signatures:
            return
        self._lsh.insert(key, signature)
        self._signatures[key] = signature

    def matches(self, signature: MinHash | None) -> list[Hashable]:
        """Keys whose signature is at least ``threshold`` similar, in sorted order."""
        if signature is None or not self._signatures:
            return []
        found = [
            key
            for key in self._lsh.query(signature)
            if similarity(signature, self._signatures[key]) >= self.config.threshold
        ]
        return sorted(found)
