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
split is a hash. Duplicates and near-duplicates are found within the data
the planner is given (one cell): the same prompt asked by a train user on
one day and a test user on another is not detected.

Prompts are compared by their dialogue text (user turns, earlier assistant
turns, tool results; system prompts ignored — see :mod:`.text`) with MinHash
(:mod:`.near_duplicates`, default Jaccard ≥ 0.7 on character 5-grams).

**Streaming.** :class:`SplitPlanner` reads the cell once, batch by batch,
keeping per row only a 16-byte id, its group, a 16-byte duplicate key, a
timestamp and (per distinct prompt) a MinHash; :class:`SplitPlan` then
assigns splits to the batches of a second pass.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from ..stages import identity_key
from .near_duplicates import MinHasher, NearDuplicateConfig, NearDuplicateIndex
from .schema import EXCLUDED, EXCLUDED_DUPLICATE, EXCLUDED_NEAR_DUPLICATE, TEST, TRAIN
from .text import digest, iter_row_texts

GROUP_COLUMNS = ("user_id", "session_id")
FALLBACK_GROUP_COLUMN = "trace_id"
DEFAULT_SALT = "trace-reward-split-v1"

_TRAIN, _TEST, _DUPLICATE, _NEAR_DUPLICATE = 0, 1, 2, 3
_CODE_SPLIT = {_TRAIN: TRAIN, _TEST: TEST, _DUPLICATE: EXCLUDED, _NEAR_DUPLICATE: EXCLUDED}
_CODE_REASON = {_TRAIN: None, _TEST: None, _DUPLICATE: EXCLUDED_DUPLICATE, _NEAR_DUPLICATE: EXCLUDED_NEAR_DUPLICATE}


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
            "rows_grouped_by_trace_id": self.fallback_rows,
            "groups_train": self.groups_train,
            "groups_test": self.groups_test,
        }


PLAN_COLUMNS = ("trace_id", "observation_id", "timestamp", "messages", "prompt", "response")


class SplitPlanner:
    """First pass: ``add`` every batch of the cell, then ``finish`` for a :class:`SplitPlan`.

    ``key_salt`` keys the hash stored as ``split_key`` (see the module doc):
    pass a secret (the pipeline passes the erasure salt). Without one the
    public split salt keys it, which hides the raw id but not from someone who
    can guess user ids.
    """

    def __init__(self, config: SplitConfig | None = None, key_salt: bytes | str | None = None) -> None:
        self.config = config or SplitConfig()
        self.key_salt = key_salt if key_salt else self.config.salt
        self._index: dict[bytes, int] = {}
        self._group_ids: dict[str, int] = {}
        self._group: list[int] = []
        self._test: list[bool] = []
        self._dedup: list[bytes] = []
        self._timestamp: list[int] = []
        self._text: list[bytes | None] = []
        self._fallback = 0
        self._hasher = MinHasher(self.config.near_duplicates) if self.config.near_duplicates else None
        self._finished = False

    @property
    def columns(self) -> list[str]:
        """The columns the planner reads (scan only these in the first pass)."""
        return [*PLAN_COLUMNS, self.config.group_by]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        if self._finished:
            raise RuntimeError("SplitPlanner.add after finish")
        names = batch.schema.names
        trace_ids = batch.column("trace_id").to_pylist()
        observation_ids = batch.column("observation_id").to_pylist() if "observation_id" in names else [None] * len(trace_ids)
        groups = (
            batch.column(self.config.group_by).to_pylist()
            if self.config.group_by in names
            else [None] * len(trace_ids)
        )
        timestamps = (
            pc.cast(batch.column("timestamp"), pa.int64()).to_pylist() if "timestamp" in names else [0] * len(trace_ids)
        )
        for i, texts in enumerate(iter_row_texts(batch)):
            row_key = identity_key(trace_ids[i], observation_ids[i])
            if row_key in self._index:
                raise ValueError(
                    f"row ({trace_ids[i]!r}, {observation_ids[i]!r}) appears twice: splits need unique row ids"
                )
            key = group_key(groups[i], trace_ids[i], self.config.group_by)
            if not key.startswith(self.config.group_by + ":"):
                self._fallback += 1
            group_id = self._group_ids.get(key)
            if group_id is None:
                group_id = self._group_ids[key] = len(self._group_ids)
            self._index[row_key] = len(self._group)
            self._group.append(group_id)
            self._test.append(group_split(key, self.config) == TEST)
            self._dedup.append(texts.dedup_key)
            self._timestamp.append(timestamps[i] if timestamps[i] is not None else 0)
            if self._hasher is not None:
                near = texts.dialogue_near
                text_key = digest(near) if near else None
                if text_key is not None:
                    self._hasher.signature(near)
                self._text.append(text_key)
            else:
                self._text.append(None)

    def finish(self) -> "SplitPlan":
        self._finished = True
        n = len(self._group)
        codes = [_TEST if is_test else _TRAIN for is_test in self._test]
        row_keys = list(self._index)  # insertion order = row order

        if self.config.remove_duplicates:
            by_key: dict[bytes, list[int]] = defaultdict(list)
            for row, key in enumerate(self._dedup):
                by_key[key].append(row)
            for rows in by_key.values():
                if len(rows) < 2:
                    continue
                keep = min(rows, key=lambda r: (self._test[r], self._timestamp[r], row_keys[r]))
                for row in rows:
                    if row != keep:
                        codes[row] = _DUPLICATE

        if self._hasher is not None:
            index = NearDuplicateIndex(self.config.near_duplicates)
            for row in range(n):
                if codes[row] == _TRAIN and self._text[row] is not None:
                    index.add(self._text[row], self._hasher.cached(self._text[row]))
            verdict: dict[bytes, bool] = {}
            for row in range(n):
                text_key = self._text[row]
                if codes[row] != _TEST or text_key is None:
                    continue
                if text_key not in verdict:
                    verdict[text_key] = bool(index.matches(self._hasher.cached(text_key)))
                if verdict[text_key]:
                    codes[row] = _NEAR_DUPLICATE

        # Only the salted hash of each group key leaves the planner.
        group_names = [hashed_split_key(key, self.key_salt) for key in self._group_ids]
        stats = SplitStats(rows=n, fallback_rows=self._fallback)
        counts = Counter(codes)
        stats.train, stats.test = counts[_TRAIN], counts[_TEST]
        stats.excluded_duplicate, stats.excluded_near_duplicate = counts[_DUPLICATE], counts[_NEAR_DUPLICATE]
        stats.groups_train = len({self._group[r] for r in range(n) if codes[r] == _TRAIN})
        stats.groups_test = len({self._group[r] for r in range(n) if codes[r] == _TEST})
        plan = SplitPlan(
            self.config,
            {row_keys[r]: (codes[r], self._group[r]) for r in range(n)},
            group_names,
            stats,
        )
        # Free the first pass's state: the plan keeps only (code, group) per row.
        self._hasher = None
        self._group_ids = {}
        return plan


class SplitPlan:
    """Second pass: the split, split key (a salted hash) and exclusion reason of each planned row."""

    def __init__(self, config: SplitConfig, rows: dict[bytes, tuple[int, int]], groups: list[str], stats: SplitStats) -> None:
        self.config = config
        self._rows = rows
        self._groups = groups
        self.stats = stats

    def __len__(self) -> int:
        return len(self._rows)

    def assign(self, batch: pa.RecordBatch | pa.Table) -> dict[str, pa.Array]:
        """``{"split", "split_key", "excluded_reason"}`` for each row of ``batch``.

        Raises :class:`SplitPlanMismatch` for a row the plan has not seen.
        """
        trace_ids = batch.column("trace_id").to_pylist()
        names = batch.schema.names
        observation_ids = batch.column("observation_id").to_pylist() if "observation_id" in names else [None] * len(trace_ids)
        splits, keys, reasons = [], [], []
        for trace_id, observation_id in zip(trace_ids, observation_ids):
            entry = self._rows.get(identity_key(trace_id, observation_id))
            if entry is None:
                raise SplitPlanMismatch(f"row ({trace_id!r}, {observation_id!r}) was not in the split plan")
            code, group = entry
            splits.append(_CODE_SPLIT[code])
            keys.append(self._groups[group])
            reasons.append(_CODE_REASON[code])
        return {
            "split": pa.array(splits, pa.string()),
            "split_key": pa.array(keys, pa.string()),
            "excluded_reason": pa.array(reasons, pa.string()),
        }

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
    batches: Iterable[pa.RecordBatch | pa.Table], config: SplitConfig | None = None, key_salt: bytes | str | None = None
) -> SplitPlan:
    planner = SplitPlanner(config, key_salt)
    for batch in batches:
        planner.add(batch)
    return planner.finish()


def assign_splits(
    table: pa.Table, config: SplitConfig | None = None, key_salt: bytes | str | None = None
) -> tuple[pa.Table, SplitStats]:
    """In-memory convenience: plan and apply on one table."""
    plan = plan_splits([table], config, key_salt)
    return plan.apply(table), plan.stats
