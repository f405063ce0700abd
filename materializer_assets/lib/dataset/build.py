"""Build ``reward_dataset`` rows: traces + scores → rewards, labels, splits, lineage.

The asset does two streaming passes over its cell::

    builder = RewardDatasetBuilder(RewardConfig(), SplitConfig(), RewardLineage(snapshot_id),
                                   scores=ScoreLookup(judge=judge_table, ragas=ragas_table))
    builder.plan(scan(columns=builder.plan_columns))      # pass 1: splits (ids + prompt texts)
    for batch in builder.batches(scan()):                  # pass 2: rows in REWARD_DATASET_SCHEMA
        write(batch)
    builder.metadata()                                     # counts and histogram only

Input batches are normalized trace rows (``lib/schema.py``; ``feedback_score``
included) plus, when scores are joined by the caller instead of
:class:`ScoreLookup`, the columns ``ragas_reward``, ``ragas_status``,
``ragas_version``, ``judge_score``, ``judge_status``, ``judge_model`` and
``prompt_version`` (any of them may be absent: null; a score without its
status column stands for ok). A row gets a reward and a label only when every
configured scorer is ok for it (see :mod:`.rewards`).

Consent is enforced at write time: a row without consent = true and a
recorded consent source raises :class:`~materializer_assets.lib.stages.ConsentViolation`
before anything is yielded for its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..identity import find_sorted, joined_keys
from ..stages import require_granted
from .rewards import RewardConfig, reward_columns
from .schema import PASSTHROUGH_COLUMNS, REWARD_DATASET_SCHEMA
from .near_duplicates import NearDuplicateReference
from .splits import SplitConfig, SplitPlan, SplitPlanner, SplitStats
from .summary import RewardSummary

# Score columns taken from each scoring asset, renamed for the reward row.
JUDGE_COLUMNS = {"judge_score": "judge_score", "status": "judge_status", "judge_model": "judge_model", "prompt_version": "prompt_version"}
RAGAS_COLUMNS = {"ragas_reward": "ragas_reward", "status": "ragas_status", "prompt_version": "ragas_version"}
SCORE_KEY_COLUMNS = ("trace_id", "observation_id", "content_hash")



class DuplicateScoreRows(ValueError):
    """A scoring table has two rows for one (trace_id, observation_id, content_hash)."""


def _key_digests(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """16-byte digests of the score keys (numpy ``S16``): ~16 bytes a row where a dict of the
    key strings took ~300 (a 300k-row cell's two score tables: ~180 MB)."""
    return joined_keys([table.column(name) for name in SCORE_KEY_COLUMNS])


def _compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Score strings (statuses, model names, prompt versions: a handful of values) dictionary-encoded."""
    return pa.RecordBatch.from_arrays(
        [pc.dictionary_encode(c) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) else c for c in batch.columns],
        names=batch.schema.names,
    )


def _prepare(
    scores: pa.Table | pa.RecordBatchReader | None, columns: dict[str, str], name: str
) -> tuple[pa.Table, np.ndarray, np.ndarray] | None:
    """``(score columns, sorted key digests, row of each sorted digest)``. ``scores`` is read a
    batch at a time: the key strings of a whole cell are never held, only their digests."""
    if scores is None:
        return None
    missing = [c for c in (*SCORE_KEY_COLUMNS, *columns) if c not in scores.schema.names]
    if missing:
        raise ValueError(f"{name} scores lack columns {missing}")
    digests, picked = [], []
    for batch in scores.to_batches() if isinstance(scores, pa.Table) else scores:
        digests.append(_key_digests(batch))
        picked.append(_compact(batch.select(list(columns)).rename_columns([columns[c] for c in columns])))
    digests = np.concatenate(digests) if digests else np.zeros(0, "S16")
    order = np.argsort(digests, kind="stable")
    digests = digests[order]
    if len(digests) > 1 and (digests[1:] == digests[:-1]).any():
        raise DuplicateScoreRows(f"{name} scores have duplicate (trace_id, observation_id, content_hash) rows")
    if picked:
        table = pa.Table.from_batches(picked).unify_dictionaries().combine_chunks()
    else:
        table = pa.table({columns[c]: pa.array([], scores.schema.field(c).type) for c in columns})
    return table, digests, order


class ScoreLookup:
    """Scores of one cell, joined onto trace batches by (trace_id, observation_id, content_hash).

    The content hash is part of the key, so a trace re-extracted with different
    content never inherits the old content's score. A trace without a score
    row gets null scores (and null statuses: not scored).
    """

    def __init__(
        self, judge: pa.Table | pa.RecordBatchReader | None = None, ragas: pa.Table | pa.RecordBatchReader | None = None
    ) -> None:
        # Keys as sorted 16-byte digests, found by binary search: built once per cell (pc.index_in
        # would hash the whole score table again for every batch), and small (no Python strings).
        self._tables = [t for t in (_prepare(judge, JUDGE_COLUMNS, "judge"), _prepare(ragas, RAGAS_COLUMNS, "ragas")) if t is not None]

    def attach(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """``batch`` with the score columns appended (replacing same-named ones), row order kept."""
        return _attach(batch, [partial(_look_up, prepared) for prepared in self._tables])


def _attach(batch: pa.RecordBatch | pa.Table, sources: list[Callable[[np.ndarray], pa.Table | None]]) -> pa.Table:
    """``batch`` with the score columns each source gives for its keys (None: none) appended."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    if not sources:
        return table
    keys = _key_digests(table)
    for source in sources:
        picked = source(keys)
        if picked is not None:
            table = _append_scores(table, picked)
    return table


def _look_up(prepared: tuple[pa.Table, np.ndarray, np.ndarray], keys: np.ndarray) -> pa.Table:
    """The score rows of ``keys`` (nulls for a key without one), in the order of ``keys``."""
    scores, digests, order = prepared
    # A lookup + take that, unlike an Acero join, accepts the nested (list/struct)
    # columns of the trace side; a key without a score row takes nulls.
    if len(digests):
        at, found = find_sorted(digests, keys)
        positions = pa.array(np.where(found, order[at], 0), pa.int64(), mask=~found)
    else:
        positions = pa.nulls(len(keys), pa.int64())
    return scores.take(positions)


def _append_scores(table: pa.Table, picked: pa.Table) -> pa.Table:
    for name in picked.column_names:
        if name in table.column_names:
            table = table.drop_columns([name])
        column = picked.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        table = table.append_column(name, column)
    return table


class _ScoresInStep:
    """One score cell read alongside the trace batches: the rows of a batch are the next rows of
    the score cell (a scorer writes its cell in the order it reads the table) when their keys are
    the batch's keys, in order. At the first batch where they are not (rows filtered since
    scoring, a cell written in another order), the rest is looked up by key as
    :class:`ScoreLookup` does, from a fresh read of the cell."""

    def __init__(self, open_scores: Callable[[], pa.RecordBatchReader | None], columns: dict[str, str], name: str) -> None:
        self._open = open_scores
        self._columns = columns
        self._name = name
        self._reader: Iterator[pa.RecordBatch] | None = None
        self._ahead: list[pa.RecordBatch] = []  # read, not yet matched
        self._ahead_rows = 0
        self._lookup: tuple[pa.Table, np.ndarray, np.ndarray] | None = None
        self._absent = False  # the cell has no score file
        self.by_key = False  # True once the rest is looked up by key

    def _next_rows(self, n: int) -> pa.Table | None:
        if self._reader is None:
            reader = self._open()
            if reader is None:
                self._absent = True
                return None
            self._check_columns(reader.schema)
            self._reader = iter(reader)
        while self._ahead_rows < n:
            batch = next(self._reader, None)
            if batch is None:
                break
            self._ahead.append(batch)
            self._ahead_rows += batch.num_rows
        if not self._ahead:
            return None
        rows = pa.Table.from_batches(self._ahead)
        taken, rest = rows.slice(0, n), rows.slice(n)
        self._ahead = rest.to_batches() if rest.num_rows else []
        self._ahead_rows = rest.num_rows
        return taken

    def _check_columns(self, schema: pa.Schema) -> None:
        missing = [c for c in (*SCORE_KEY_COLUMNS, *self._columns) if c not in schema.names]
        if missing:
            raise ValueError(f"{self._name} scores lack columns {missing}")

    def scores_for(self, keys: np.ndarray) -> pa.Table | None:
        """The score columns of the rows with ``keys`` (None when the cell has no score file)."""
        if self._absent:
            return None
        if not self.by_key:
            rows = self._next_rows(len(keys))
            if rows is not None and rows.num_rows == len(keys) and (_key_digests(rows) == keys).all():
                return rows.select(list(self._columns)).rename_columns([self._columns[c] for c in self._columns])
            if self._absent:
                return None
            self._switch_to_lookup()
        assert self._lookup is not None
        return _look_up(self._lookup, keys)

    def _switch_to_lookup(self) -> None:
        self.by_key = True
        self._reader, self._ahead, self._ahead_rows = None, [], 0
        self._lookup = _prepare(self._open(), self._columns, self._name)
        if self._lookup is None:  # the cell is gone since: no score for any row
            self._lookup = (pa.table({}), np.zeros(0, "S16"), np.zeros(0, np.int64))

    def finish(self) -> None:
        """Score rows left once every trace is matched are for unknown traces (unused, as by key) or
        duplicates: the whole cell is then checked as :class:`ScoreLookup` checks it."""
        if self.by_key or self._reader is None:
            return
        if self._ahead_rows or next(self._reader, None) is not None:
            self._reader, self._ahead = None, []
            _prepare(self._open(), self._columns, self._name)  # raises DuplicateScoreRows


class ScoresInCellOrder:
    """:class:`ScoreLookup`'s join, holding a batch of score rows instead of a whole cell's keys and
    scores (~90 MB for a million rows) when the score cells are in the order the trace cell is
    read, as the scoring assets write them; by key otherwise (see :class:`_ScoresInStep`).

    ``judge`` and ``ragas`` open a fresh read of their cell (None: no score file), once for the
    stream and again if a lookup by key is needed. :meth:`finish` after the last batch raises
    :class:`DuplicateScoreRows` where :class:`ScoreLookup` would."""

    def __init__(
        self,
        judge: Callable[[], pa.RecordBatchReader | None] | None = None,
        ragas: Callable[[], pa.RecordBatchReader | None] | None = None,
    ) -> None:
        self._sides = [
            _ScoresInStep(open_scores, columns, name)
            for open_scores, columns, name in ((judge, JUDGE_COLUMNS, "judge"), (ragas, RAGAS_COLUMNS, "ragas"))
            if open_scores is not None
        ]

    @property
    def joined_by_key(self) -> list[str]:
        return [side._name for side in self._sides if side.by_key]

    def attach(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        return _attach(batch, [side.scores_for for side in self._sides])

    def finish(self) -> None:
        for side in self._sides:
            side.finish()


@dataclass(frozen=True)
class RewardLineage:
    """Lineage the batches do not carry: the Iceberg snapshot the cell was read from."""

    iceberg_snapshot_id: int | None = None


def reward_batch(
    batch: pa.RecordBatch | pa.Table,
    *,
    config: RewardConfig,
    plan: SplitPlan,
    lineage: RewardLineage = RewardLineage(),
) -> pa.RecordBatch:
    """One batch of traces (already joined with scores) as ``REWARD_DATASET_SCHEMA`` rows."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    table = table.combine_chunks()
    if "consent" not in table.column_names or "consent_source" not in table.column_names:
        raise ValueError("reward rows need the consent and consent_source columns (consent lineage)")
    for part in table.to_batches():
        require_granted(part)
    n = table.num_rows
    computed: dict[str, pa.Array | pa.ChunkedArray] = {}
    computed.update(reward_columns(table, config))
    computed.update(plan.assign(table))
    computed["iceberg_snapshot_id"] = pa.array([lineage.iceberg_snapshot_id] * n, pa.int64())
    computed["reward_spec"] = pa.array([config.spec()] * n, pa.string())
    computed["split_spec"] = pa.array([plan.config.spec()] * n, pa.string())
    arrays = []
    for field in REWARD_DATASET_SCHEMA:
        if field.name in computed:
            values = computed[field.name]
        elif field.name in PASSTHROUGH_COLUMNS and field.name in table.column_names:
            values = table.column(field.name)
        elif field.nullable:
            values = pa.nulls(n, field.type)
        else:
            raise ValueError(f"reward rows need the column {field.name!r}")
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks else pa.array([], field.type)
        if field.name == "iceberg_snapshot_id" or values.type != field.type:
            values = values.cast(field.type)
        if not field.nullable and values.null_count:
            raise ValueError(f"column {field.name!r} has {values.null_count} null(s) and may not")
        arrays.append(values)
    return pa.RecordBatch.from_arrays(arrays, schema=REWARD_DATASET_SCHEMA)


class RewardDatasetBuilder:
    """Two-pass builder of a ``reward_dataset`` cell (see the module docstring).

    ``key_salt`` keys the salted hash stored as ``split_key`` (the pipeline
    passes the erasure salt; see :mod:`.splits`).
    """

    def __init__(
        self,
        reward_config: RewardConfig | None = None,
        split_config: SplitConfig | None = None,
        lineage: RewardLineage | None = None,
        scores: ScoreLookup | ScoresInCellOrder | None = None,
        summary: RewardSummary | None = None,
        key_salt: bytes | str | None = None,
        reference: "NearDuplicateReference | None" = None,
    ) -> None:
        self.reward_config = reward_config or RewardConfig()
        # near-duplicate signatures other cells published (lib/dataset/near_duplicate_index.py)
        self.reference = reference
        self.split_config = split_config or SplitConfig()
        self.key_salt = key_salt
        self.lineage = lineage or RewardLineage()
        self.scores = scores
        self.summary = summary or RewardSummary()
        self._plan: SplitPlan | None = None

    @property
    def plan_columns(self) -> list[str]:
        return SplitPlanner(self.split_config).columns

    def plan(self, batches: Iterable[pa.RecordBatch | pa.Table]) -> SplitStats:
        planner = SplitPlanner(self.split_config, self.key_salt, self.reference)
        planner.add_all(batches)
        self._plan = planner.finish()
        return self._plan.stats

    def batches(self, batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.RecordBatch]:
        if self._plan is None:
            raise RuntimeError("RewardDatasetBuilder.plan must run before batches")
        for batch in batches:
            if not batch.num_rows:
                continue
            if self.scores is not None:
                batch = self.scores.attach(batch)
            out = reward_batch(batch, config=self.reward_config, plan=self._plan, lineage=self.lineage)
            self.summary.add(out)
            yield out
        finish = getattr(self.scores, "finish", None)
        if finish is not None:
            finish()  # score rows no trace took: duplicates raise before the cell is committed

    @property
    def split_plan(self) -> SplitPlan | None:
        return self._plan

    def metadata(self) -> dict:
        split_stats = self._plan.stats.as_metadata() if self._plan is not None else {}
        return {
            **split_stats,
            **self.summary.as_metadata(),
            # The scorers every labeled row was ok for, and those that did not count (switched off or weight 0).
            "reward_scorers": "+".join(self.reward_config.scorers) or "none",
            "reward_scorers_left_out": self.reward_config.scorers_left_out(),
            "reward_spec": self.reward_config.spec(),
            "split_spec": self.split_config.spec(),
        }


def build_reward_table(
    traces: pa.Table,
    *,
    reward_config: RewardConfig | None = None,
    split_config: SplitConfig | None = None,
    lineage: RewardLineage | None = None,
    scores: ScoreLookup | None = None,
    key_salt: bytes | str | None = None,
) -> tuple[pa.Table, dict]:
    """In-memory convenience over :class:`RewardDatasetBuilder`: ``(table, metadata)``."""
    builder = RewardDatasetBuilder(reward_config, split_config, lineage, scores, key_salt=key_salt)
    builder.plan(traces.to_batches())
    batches = list(builder.batches(traces.to_batches()))
    return pa.Table.from_batches(batches, schema=REWARD_DATASET_SCHEMA), builder.metadata()
