"""Train/test assignment: stable across re-runs and backfills, and leakage-safe.

**Groups.** Every row belongs to a group: ``user_id`` by default, or
``session_id`` (``SplitConfig.group_by``). A row whose group column is null or
blank falls back to its own ``trace_id`` (the rows of one trace stay together,
but two anonymous traces of the same person cannot be linked: give traces a
user id if that matters). The group's split is a pure function of the group
key and the salt::

    test  ⇔  blake2b(salt ␀ "user_id:<id>", 8 bytes) / 2⁶⁴ < test_fraction

so a user is in the same split in every cell, every day, every re-run and
every backfill, whatever other rows exist — no user is ever in both splits,
including across the daily partitions a trainer concatenates.

**The stored key.** The ``split_key`` column holds the group key only as a
salted hash, ``HMAC-SHA256(key_salt, "user_id:<id>")`` in hex (the pipeline
passes the erasure salt, so it is as secret as the erasure audit's user
hashes): the same for a user in every cell and run, never the raw id. The
split itself is decided by the hash above (the public split salt), so the
key salt can change without moving anybody between train and test.

**Exact duplicates.** Rows with the same prompt side (roles included) and the
same response, modulo case and whitespace, are one example: one is kept, the
others get ``split = "excluded"``, ``excluded_reason = "duplicate"``. The kept
one is the train copy if any (a test copy of a train example would leak), then
the earliest timestamp, then the smallest (trace_id, observation_id) digest.

**Near-duplicate prompts.** A prompt that appears, slightly edited, in both
splits leaks the test set into training even though no user straddles. We
reconcile "no user in both splits" with "near-duplicates in the same split"
by keeping the per-user hash as the only thing that decides a row's split and
*dropping the test rows whose prompt near-duplicates a kept train prompt*
(``excluded_reason = "near_duplicate_of_train"``, counted). We rejected the
alternative — a union-find over users and near-duplicate clusters that moves
whole users into one split — because it makes a user's split depend on other
users' data: a prompt arriving tomorrow could move a user from test to train,
so the same user would sit in test on one day and in train on another, which
is exactly the leak the split exists to prevent, and re-runs with late data
would reshuffle earlier assignments. With the rule above, adding rows never
moves a row between train and test; it can only exclude rows — a test row
that now near-duplicates a new train prompt, or a copy whose content now has
a preferred (train or earlier) duplicate (covered by tests). The test set is
the one that shrinks, as in benchmark decontamination.

Scope: users can never straddle, across any number of cells, because the
split is a hash. Exact duplicates are found within the cell. Near duplicates
are found within the cell and, through ``reference`` (the signatures every
other cell published, :mod:`.near_duplicate_index`), across cells: a test row
near another cell's train row is excluded the same way, and a train row near
a test row another cell already published is dropped from training
(``excluded_reason = "near_duplicate_of_test"``, counted).

Prompts are compared by their dialogue text (user turns, earlier assistant
turns, tool results; system prompts ignored — see :mod:`.text`) with MinHash
(vectorized in :mod:`.lsh`, default Jaccard ≥ 0.7 on byte 5-grams).

**Streaming.** :class:`SplitPlanner` reads the cell once, batch by batch,
keeping in memory per row only a 16-byte id, its group, a 16-byte duplicate
key and a timestamp, and per distinct prompt a 16-byte digest and its id;
:class:`SplitPlan` then assigns splits to the batches of a second pass. Each
distinct prompt's MinHash signature, the low 8 bits of its bins and its LSH
band hashes go to unlinked temporary files as they are made
(:class:`SpilledRows`): matching reads one band's hashes at a time and the
low bits of a block of candidate pairs at a time, and the cross-cell index
reads the full signatures back a batch's rows at a time.

**Low bits.** Verification compares 8-bit bins (b-bit minwise hashing, Li &
König 2010): bins whose minima differ still agree with probability 1/256, so a
pair counts as near when its share of equal bins is at least
``threshold + (1 − threshold)/256`` (:func:`.lsh.agreement_needed`), the share
expected at the threshold. A quarter of the memory; decisions differ from
32-bit ones only for pairs within one bin of the threshold.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..identity import batch_identity_keys, find_sorted
from ..threads import map_ahead
import numpy as np

from .lsh import LshIndex, low_bits
from .near_duplicates import NearDuplicateConfig, NearDuplicateReference, PreparedTexts, SignatureStore
from .spill import SpilledRows, concat_draining
from .schema import EXCLUDED, EXCLUDED_DUPLICATE, EXCLUDED_NEAR_DUPLICATE, EXCLUDED_NEAR_DUPLICATE_OF_TEST, TEST, TRAIN
from .text import split_keys

GROUP_COLUMNS = ("user_id", "session_id")
FALLBACK_GROUP_COLUMN = "trace_id"
DEFAULT_SALT = "trace-reward-split-v1"

_TRAIN, _TEST, _DUPLICATE, _NEAR_DUPLICATE, _NEAR_DUPLICATE_OF_TEST = 0, 1, 2, 3, 4
_CODE_SPLIT = {_TRAIN: TRAIN, _TEST: TEST, _DUPLICATE: EXCLUDED, _NEAR_DUPLICATE: EXCLUDED, _NEAR_DUPLICATE_OF_TEST: EXCLUDED}
_CODE_REASON = {
    _TRAIN: None,
    _TEST: None,
    _DUPLICATE: EXCLUDED_DUPLICATE,
    _NEAR_DUPLICATE: EXCLUDED_NEAR_DUPLICATE,
    _NEAR_DUPLICATE_OF_TEST: EXCLUDED_NEAR_DUPLICATE_OF_TEST,
}


class SplitPlanMismatch(KeyError):
    """A row to assign was not in the rows the plan was made from."""


@dataclass(frozen=True)
class SplitConfig:
    group_by: str = "user_id"
    test_fraction: float = 0.2
    salt: str = DEFAULT_SALT
    remove_duplicates: bool = True
    # None disables the near-duplicate check.
    near_duplicates: NearDuplicateConfig | None = field(default_factory=NearDuplicateConfig)

    def __post_init__(self) -> None:
        if self.group_by not in GROUP_COLUMNS:
            raise ValueError(f"split group_by must be one of {GROUP_COLUMNS}, got {self.group_by!r}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {self.test_fraction}")
        if not self.salt:
            raise ValueError("split salt must not be empty")

    def spec(self) -> str:
        return json.dumps(
            {
                "group_by": self.group_by,
                "test_fraction": self.test_fraction,
                "salt": self.salt,
                "remove_duplicates": self.remove_duplicates,
                "near_duplicates": self.near_duplicates.spec() if self.near_duplicates else None,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def group_key(group_value: str | None, trace_id: str, group_by: str) -> str:
    """``"<column>:<value>"``, or ``"trace_id:<id>"`` when the group value is missing."""
    if group_value is not None and group_value.strip():
        return f"{group_by}:{group_value}"
    return f"{FALLBACK_GROUP_COLUMN}:{trace_id}"


def hashed_split_key(key: str, key_salt: bytes | str) -> str:
    """What ``split_key`` stores for the group ``key``: HMAC-SHA256(key_salt, key), hex."""
    salt = key_salt.encode("utf-8") if isinstance(key_salt, str) else key_salt
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()


def group_split(key: str, config: SplitConfig) -> str:
    """The split of a group: a pure function of (salt, key, test_fraction)."""
    value = int.from_bytes(hashlib.blake2b(f"{config.salt}\x00{key}".encode("utf-8"), digest_size=8).digest(), "big")
    return TEST if value / 2**64 < config.test_fraction else TRAIN


@dataclass
class SplitStats:
    rows: int = 0
    train: int = 0
    test: int = 0
    excluded_duplicate: int = 0
    excluded_near_duplicate: int = 0
    # of excluded_near_duplicate: test rows whose near duplicate is a train row of another cell
    excluded_near_duplicate_other_cell: int = 0
    # train rows dropped because they near-duplicate a test row already published in another cell
    excluded_near_duplicate_of_test_other_cell: int = 0
    fallback_rows: int = 0  # rows grouped by trace_id because the group column was empty
    groups_train: int = 0
    groups_test: int = 0

    def as_metadata(self) -> dict:
        return {
            "rows": self.rows,
            "rows_train": self.train,
            "rows_test": self.test,
            "rows_excluded_duplicate": self.excluded_duplicate,
            "rows_excluded_near_duplicate": self.excluded_near_duplicate,
            "rows_excluded_near_duplicate_of_other_cell_train": self.excluded_near_duplicate_other_cell,
            "rows_dropped_from_train_near_duplicate_of_other_cell_test": self.excluded_near_duplicate_of_test_other_cell,
            "rows_grouped_by_trace_id": self.fallback_rows,
            "groups_train": self.groups_train,
            "groups_test": self.groups_test,
        }


PLAN_COLUMNS = ("trace_id", "observation_id", "timestamp", "messages", "prompt", "response")


_PUBLISHED_READ_ROWS = 1 << 16
# Rows whose texts are keyed at a time: split_keys holds ~4 copies of a slice's text at once
# (a 4096-row batch of 2 kB prompts: ~110 MB), so the planner takes batches in slices, keyed
# one per core at once (lib.threads): 512 rows × 2 cores hold what 1024 rows on one did.
_ADD_SLICE_ROWS = 512


@dataclass(frozen=True)
class _KeyedSlice:
    row_keys: np.ndarray  # S16 identity digests
    dedup_keys: np.ndarray  # S16 exact-duplicate digests
    timestamps: np.ndarray  # int64
    texts: PreparedTexts | None  # near-duplicate texts for the signature store (None: off)


class SplitPlanner:
    """First pass: ``add`` every batch of the cell, then ``finish`` for a :class:`SplitPlan`.

    ``key_salt`` keys the hash stored as ``split_key`` (see the module doc):
    pass a secret (the pipeline passes the erasure salt). Without one the
    public split salt keys it, which hides the raw id but not from someone who
    can guess user ids.

    Per row it keeps ~48 bytes in numpy arrays (a million-row cell: ~48 MB, not the
    ~500 MB of Python objects per-row dicts and lists took), plus per distinct group
    its key, and per distinct prompt ~25 bytes: its digest, id and a flag (its MinHash
    signature, low bits and band hashes go to temporary files).
    """

    def __init__(
        self,
        config: SplitConfig | None = None,
        key_salt: bytes | str | None = None,
        reference: NearDuplicateReference | None = None,
    ) -> None:
        self.config = config or SplitConfig()
        # signatures of the rows other cells published (train and test); see the module doc
        self.reference = reference
        self.key_salt = key_salt if key_salt else self.config.salt
        self._group_ids: dict[str, int] = {}
        self._group_is_test: list[bool] = []
        self._keys: list[np.ndarray] = []  # S16 identity digests, per batch
        self._group: list[np.ndarray] = []  # int32 group ids
        self._dedup: list[np.ndarray] = []  # S16 exact-duplicate digests
        self._timestamp: list[np.ndarray] = []  # int64
        self._text: list[np.ndarray] = []  # int32 signature ids (-1: none)
        self._fallback = 0
        self._other_cell_test_hits = 0
        self._hasher = SignatureStore(self.config.near_duplicates) if self.config.near_duplicates else None
        self._finished = False

    @property
    def columns(self) -> list[str]:
        """The columns the planner reads (scan only these in the first pass)."""
        return [*PLAN_COLUMNS, self.config.group_by]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.add_all([batch])

    def add_all(self, batches: Iterable[pa.RecordBatch | pa.Table]) -> None:
        """:meth:`add` of each batch, in order. The texts of each slice are keyed on the pool's
        threads (lib.threads) a few slices ahead, while this thread reads the next batches,
        numbers the groups and stores what is keyed: the result is the same as one by one."""
        if self._finished:
            raise RuntimeError("SplitPlanner.add after finish")
        for part, keyed in map_ahead(self._key_slice, self._slices(batches)):
            self._add_keyed(part, keyed)

    @staticmethod
    def _slices(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for part in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
                for start in range(0, part.num_rows, _ADD_SLICE_ROWS):
                    yield part.slice(start, _ADD_SLICE_ROWS)

    def _key_slice(self, batch: pa.RecordBatch) -> _KeyedSlice:
        """Everything of a slice that depends on it alone (runs in a pool thread)."""
        dedup_keys, near_texts = split_keys(batch)
        if "timestamp" in batch.schema.names:
            timestamps = np.asarray(pc.fill_null(pc.cast(batch.column("timestamp"), pa.int64()), 0), np.int64)
        else:
            timestamps = np.zeros(batch.num_rows, np.int64)
        return _KeyedSlice(
            row_keys=batch_identity_keys(batch),
            dedup_keys=np.array(dedup_keys, dtype="S16").reshape(-1),
            timestamps=timestamps,
            texts=self._hasher.prepare(near_texts) if self._hasher is not None else None,
        )

    def _add_keyed(self, batch: pa.RecordBatch, keyed: _KeyedSlice) -> None:
        if keyed.texts is not None:
            text_ids = self._hasher.add_prepared(keyed.texts).astype(np.int32)
        else:
            text_ids = np.full(batch.num_rows, -1, np.int32)
        self._keys.append(keyed.row_keys)
        self._group.append(self._group_ids_of(batch))
        self._dedup.append(keyed.dedup_keys)
        self._timestamp.append(keyed.timestamps)
        self._text.append(text_ids)

    def _group_ids_of(self, batch: pa.RecordBatch) -> np.ndarray:
        n = batch.num_rows
        trace_ids = batch.column("trace_id").to_pylist()
        names = batch.schema.names
        groups = batch.column(self.config.group_by).to_pylist() if self.config.group_by in names else [None] * n
        group_ids = np.empty(n, np.int32)
        prefix = self.config.group_by + ":"
        for i, (group_value, trace_id) in enumerate(zip(groups, trace_ids)):
            key = group_key(group_value, trace_id, self.config.group_by)
            if not key.startswith(prefix):
                self._fallback += 1
            group_id = self._group_ids.get(key)
            if group_id is None:
                group_id = self._group_ids[key] = len(self._group_ids)
                # the split is a function of the group: hashed once per group, not per row
                self._group_is_test.append(group_split(key, self.config) == TEST)
            group_ids[i] = group_id
        return group_ids

    @staticmethod
    def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return concat_draining(parts, np.zeros(0, dtype))

    def finish(self) -> "SplitPlan":
        self._finished = True
        row_keys = self._concat(self._keys, "S16")
        group = self._concat(self._group, np.int32)
        dedup = self._concat(self._dedup, "S16")
        timestamp = self._concat(self._timestamp, np.int64)
        text = self._concat(self._text, np.int32)
        n = len(row_keys)
        order = np.argsort(row_keys, kind="stable")
        sorted_keys = row_keys[order]
        if n > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any():
            raise ValueError("a (trace_id, observation_id) appears twice: splits need unique row ids")
        is_test = np.asarray(self._group_is_test, bool)[group] if n else np.zeros(0, bool)
        codes = np.where(is_test, _TEST, _TRAIN).astype(np.int8)

        if self.config.remove_duplicates and n:
            # Per duplicate key keep the train copy if any, then the earliest, then the smallest row key.
            ranked = np.lexsort((row_keys, timestamp, is_test, dedup))
            first_of_key = np.ones(n, bool)
            first_of_key[1:] = dedup[ranked][1:] != dedup[ranked][:-1]
            codes[ranked[~first_of_key]] = _DUPLICATE

        published = None
        if self._hasher is not None:
            published = self._near_duplicates(codes, text, group)
            signatures, bands = self._signatures

        # Only the salted hash of each group key leaves the planner.
        group_names = [hashed_split_key(key, self.key_salt) for key in self._group_ids]
        stats = SplitStats(rows=n, fallback_rows=self._fallback)
        counts = np.bincount(codes, minlength=5) if n else np.zeros(5, np.int64)
        stats.train, stats.test = int(counts[_TRAIN]), int(counts[_TEST])
        stats.excluded_duplicate = int(counts[_DUPLICATE])
        stats.excluded_near_duplicate = int(counts[_NEAR_DUPLICATE])
        stats.excluded_near_duplicate_of_test_other_cell = int(counts[_NEAR_DUPLICATE_OF_TEST])
        stats.excluded_near_duplicate_other_cell = self._other_cell_test_hits
        stats.groups_train = len(np.unique(group[codes == _TRAIN]))
        stats.groups_test = len(np.unique(group[codes == _TEST]))
        plan = SplitPlan(
            self.config,
            sorted_keys,
            codes[order],
            group[order],
            text[order],
            group_names,
            stats,
            published,
            signatures if published is not None else None,
            bands if published is not None else None,
        )
        self._signatures = None
        # Free the first pass's state.
        self._hasher = None
        self._group_ids = {}
        return plan

    def _near_duplicates(self, code: np.ndarray, text: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Exclude near duplicates across splits (in place on ``code``); return the distinct
        (text id, group, code) of the kept rows (what :attr:`SplitPlan.published` is made of)."""
        assert self._hasher is not None
        near = self.config.near_duplicates
        params = near.lsh_params()
        stored = self._hasher.finish()
        # matching compares the low bits in memory; the full signatures wait on disk for the index
        sig, bands, has = stored.low, stored.bands, stored.has
        self._signatures = (stored.full, bands)
        usable = text >= 0
        usable[usable] = has[text[usable]]
        ref = self.reference
        # 1. A train row that near-duplicates a test row another cell already published is
        #    dropped from training (never moved to test: splits are per user).
        if ref is not None and len(ref.test_sig):
            rows = np.flatnonzero(usable & (code == _TRAIN))
            ids = np.unique(text[rows])
            hit = LshIndex(ref.test_sig, ref.test_bands, params).match(sig, bands, near.threshold, rows=ids) >= 0
            bad = np.isin(text[rows], ids[hit])
            code[rows[bad]] = _NEAR_DUPLICATE_OF_TEST
        # 2. A test row that near-duplicates a train row (of this cell or another) is excluded.
        train_ids = np.unique(text[usable & (code == _TRAIN)])
        rows = np.flatnonzero(usable & (code == _TEST))
        if len(rows):
            ids = np.unique(text[rows])
            near_train = LshIndex(sig, bands, params, rows=train_ids).match(sig, bands, near.threshold, rows=ids) >= 0
            near_other = np.zeros(len(ids), bool)
            if ref is not None and len(ref.train_sig):
                rest = np.flatnonzero(~near_train)
                index = LshIndex(ref.train_sig, ref.train_bands, params)
                near_other[rest] = index.match(sig, bands, near.threshold, rows=ids[rest]) >= 0
            position = np.searchsorted(ids, text[rows])
            code[rows[(near_train | near_other)[position]]] = _NEAR_DUPLICATE
            self._other_cell_test_hits = int(np.count_nonzero(near_other[position]))
        # What this cell publishes for later cells: distinct (text, group, split) of kept rows.
        kept = usable & ((code == _TRAIN) | (code == _TEST))
        rows = np.flatnonzero(kept)
        if len(rows):
            triples = np.unique(np.stack([text[rows], group[rows].astype(np.int64), code[rows].astype(np.int64)], axis=1), axis=0)
        else:
            triples = np.zeros((0, 3), np.int64)
        return triples


_SPLIT_NAMES = pa.array([_CODE_SPLIT[code] for code in range(5)], pa.string())
_REASON_NAMES = pa.array([_CODE_REASON[code] for code in range(5)], pa.string())


class SplitPlan:
    """Second pass: the split, split key (a salted hash) and exclusion reason of each planned row.

    Rows are found by their 16-byte identity digest in a sorted array (binary search)."""

    def __init__(
        self,
        config: SplitConfig,
        keys: np.ndarray,
        codes: np.ndarray,
        groups_of_rows: np.ndarray,
        texts: np.ndarray,
        groups: list[str],
        stats: SplitStats,
        published: np.ndarray | None = None,
        signatures: SpilledRows | None = None,
        bands: SpilledRows | None = None,
    ) -> None:
        self.config = config
        self._keys = keys  # sorted S16
        self._codes = codes
        self._row_groups = groups_of_rows
        self._texts = texts
        self._signatures = signatures
        self._bands = bands
        self._published = published
        self._groups = pa.array(groups, pa.string())
        self.stats = stats

    @property
    def published(self) -> NearDuplicateReference | None:
        """Signatures of the distinct (prompt, group, split) kept in train or test (``group`` = index
        into the plan's groups): what this cell means to other cells. Built on demand (a copy)."""
        if self._published is None or self._signatures is None:
            return None
        ids = self._published[:, 0]
        # the low bits, read back from the spilled signatures a window of ids at a time
        low = np.empty((len(ids), self._signatures.shape[1]), np.uint8)
        for start in range(0, len(ids), _PUBLISHED_READ_ROWS):
            low[start : start + _PUBLISHED_READ_ROWS] = low_bits(self._signatures[ids[start : start + _PUBLISHED_READ_ROWS]])
        return NearDuplicateReference.from_rows(low, self._bands[ids], self._published[:, 2] == _TEST)

    def __len__(self) -> int:
        return len(self._keys)

    def _positions(self, batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """``(positions into the plan, found)`` of each row of ``batch``."""
        return find_sorted(self._keys, batch_identity_keys(batch))

    def assign(self, batch: pa.RecordBatch | pa.Table) -> dict[str, pa.Array]:
        """``{"split", "split_key", "excluded_reason"}`` for each row of ``batch``.

        Raises :class:`SplitPlanMismatch` for a row the plan has not seen.
        """
        positions, found = self._positions(batch)
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            trace_id = batch.column("trace_id")[i].as_py()
            observation_id = batch.column("observation_id")[i].as_py() if "observation_id" in batch.schema.names else None
            raise SplitPlanMismatch(f"row ({trace_id!r}, {observation_id!r}) was not in the split plan")
        codes = pa.array(self._codes[positions].astype(np.int32))
        return {
            "split": _SPLIT_NAMES.take(codes),
            "split_key": self._groups.take(pa.array(self._row_groups[positions])),
            "excluded_reason": _REASON_NAMES.take(codes),
        }

    def index_rows(self, batch: pa.RecordBatch | pa.Table) -> pa.Table | None:
        """The rows of ``batch`` kept in train or test with their prompt's signature and
        band hashes: what the cross-cell index stores for this cell (see
        :mod:`.near_duplicate_index`). ``batch`` needs ``trace_id``, ``observation_id``
        and ``user_id``. None when near duplicates are off."""
        if self._signatures is None:
            return None
        from .near_duplicate_index import index_table

        positions, found = self._positions(batch)
        codes = self._codes[positions]
        texts = self._texts[positions]
        keep = np.flatnonzero(found & ((codes == _TRAIN) | (codes == _TEST)) & (texts >= 0))
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        table = table.select(["trace_id", "observation_id", "user_id"]).take(pa.array(keep, pa.int64()))
        ids = texts[keep]
        return index_table(table, codes[keep] == _TEST, self._signatures[ids], self._bands[ids])

    def apply(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """``batch`` with the three split columns set (replaced if present)."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        for name, values in self.assign(table).items():
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = table.append_column(name, values)
        return table


def plan_splits(
    batches: Iterable[pa.RecordBatch | pa.Table],
    config: SplitConfig | None = None,
    key_salt: bytes | str | None = None,
    reference: NearDuplicateReference | None = None,
) -> SplitPlan:
    planner = SplitPlanner(config, key_salt, reference)
    planner.add_all(batches)
    return planner.finish()


def assign_splits(
    table: pa.Table,
    config: SplitConfig | None = None,
    key_salt: bytes | str | None = None,
    reference: NearDuplicateReference | None = None,
) -> tuple[pa.Table, SplitStats]:
    """In-memory convenience: plan and apply on one table."""
    plan = plan_splits([table], config, key_salt, reference)
    return plan.apply(table), plan.stats
