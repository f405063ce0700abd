"""Scoring a cell: traces in, score rows out, streaming, with the cache in between.

:func:`score_stream` drives a cell scorer (:class:`JudgeCellScorer` or
:class:`RagasCellScorer`) over the upstream batches on one event loop of its
own: it cuts the traces into chunks, keeps ``prefetch`` chunks in flight so
the endpoint never idles between chunks, and yields one Arrow batch of score
rows per chunk, in input order. Memory is bounded by the chunks in flight.
The requests in flight are bounded by each endpoint's request guard.

The score cache is keyed on what the scorer saw: for the judge, the request
as sent (rendered messages after redaction, model, sampling settings, the
endpoint's structured-output mode) and the prompt version; for Ragas, its
inputs (question, answer, contexts), the metric set and Ragas version (its
``prompt_version``) and the LLM and embeddings models. So a change of the
redaction settings (other text), of the prompt or of the model asks again.

An ``ok`` answer (for Ragas also ``not_applicable``) is served from the cache
for good. An answer the endpoint gave but we cannot use (unparseable,
out_of_range, degenerate, …) is asked again on the next run, until it has been
asked ``max_tries`` times in total across runs (the count is kept in the cache
entry, ``tries``); then its last status is served from the cache. An ``error``
(HTTP error, timeout, connection failure after the retries of one run) is
always asked again: an outage must not pin rows to it. ``not_configured`` is
never cached.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

import pyarrow as pa

from .cache import CacheShard, ScoreCache, content_key
from .committee import AlphaAccumulator, aggregate
from .http import EndpointStats, percentile
from .inputs import TraceInput, trace_inputs
from .judge import JudgeClient, JudgeOutcome
from .prompt import JudgePrompt
from .ragas_metrics import DEFAULT_WEIGHTS, RagasOutcome, RagasScorer, not_configured_outcome
from .schema import (
    ERROR,
    JUDGE_SCORES_SCHEMA,
    NOT_APPLICABLE,
    NOT_CONFIGURED,
    OK,
    RAGAS_METRICS,
    RAGAS_SCORES_SCHEMA,
)

HISTOGRAM_BINS = 10
# Answers served from the cache for good; any other status is asked again while tries are left.
SETTLED_JUDGE_STATUSES = frozenset({OK})
SETTLED_RAGAS_STATUSES = frozenset({OK, NOT_APPLICABLE})
DEFAULT_MAX_TRIES = 3  # runs that may ask for a trace whose answer was not ok, in total
TRIES = "tries"  # the cache entry's count of runs that asked


def cached_tries(payload: dict) -> int:
    """How many runs asked for the cached answer (entries written before the count: one)."""
    try:
        return max(1, int(payload.get(TRIES) or 1))
    except (TypeError, ValueError):
        return 1


def _settled(status: str, payload: dict, max_tries: int, final: frozenset[str]) -> bool:
    """Whether a cached answer is served instead of asking again."""
    return status in final or (status != ERROR and cached_tries(payload) >= max_tries)


def _check_max_tries(max_tries: int) -> int:
    if max_tries < 1:
        raise ValueError("max_tries must be at least 1")
    return max_tries


@dataclass
class CellStats:
    """What scoring a cell did, for the asset's metadata."""

    rows: int = 0
    statuses: Counter = field(default_factory=Counter)
    metric_statuses: dict = field(default_factory=dict)
    units_asked: int = 0  # (trace, scorer) pairs sent to an endpoint in this run
    cache_hits: int = 0  # (trace, scorer) pairs answered from the cache
    rows_retried_from_cache: int = 0  # rows asked again: the cache held a non-ok answer with tries left
    rows_final_non_ok_from_cache: int = 0  # rows served a non-ok answer whose tries are used up
    histogram: list = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    null_scores: int = 0

    def add_score(self, score: float | None, rows: int = 1) -> None:
        if score is None:
            self.null_scores += rows
        else:
            self.histogram[min(HISTOGRAM_BINS - 1, int(score * HISTOGRAM_BINS))] += rows

    def histogram_metadata(self) -> dict:
        bins = {f"{i / HISTOGRAM_BINS:.1f}-{(i + 1) / HISTOGRAM_BINS:.1f}": n for i, n in enumerate(self.histogram)}
        return {**bins, "null": self.null_scores}


def endpoint_metadata(stats: Iterable[EndpointStats]) -> dict:
    total = EndpointStats()
    for item in stats:
        total.merge(item)
    p50 = percentile(total.latencies_ms, 0.5)
    p95 = percentile(total.latencies_ms, 0.95)
    return {
        "calls_made": total.requests,
        "calls_retried": total.retries,
        "call_outcomes": dict(sorted(total.outcomes.items())),
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "latency_p50_ms": round(p50, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95, 1) if p95 is not None else None,
    }


class CellScorer(Protocol):
    stats: CellStats

    @property
    def configured(self) -> bool: ...

    async def score_chunk(self, rows: list[TraceInput]) -> pa.RecordBatch: ...

    def unconfigured_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch: ...

    def finish(self) -> None: ...

    async def aclose(self) -> None: ...


IDENTITY_COLUMNS = ("trace_id", "observation_id", "content_hash", "date", "model_slug")


def _same_rows(batch: pa.RecordBatch, values: dict, schema: pa.Schema) -> pa.RecordBatch:
    """Score rows that differ only by their identity, built a column at a time."""
    n = batch.num_rows
    arrays = []
    for column in schema:
        if column.name in IDENTITY_COLUMNS:
            arrays.append(batch.column(column.name).cast(column.type))
        elif values.get(column.name) is None:
            arrays.append(pa.nulls(n, column.type))
        else:
            arrays.append(pa.array([values[column.name]] * n, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class JudgeCellScorer:
    """The judge (or judge committee) over one cell."""

    kind = "judge"

    def __init__(
        self,
        judges: list[JudgeClient],
        *,
        aggregate_method: str = "median",
        quorum: int = 1,
        cache: ScoreCache | None = None,
        day: str = "",
        cell_model_slug: str = "",
        max_tries: int = DEFAULT_MAX_TRIES,
    ) -> None:
        self.judges = judges
        self.aggregate_method = aggregate_method
        self.quorum = quorum
        self.max_tries = _check_max_tries(max_tries)
        self.prompt_version = judges[0].prompt.version if judges else JudgePrompt().version
        self.stats = CellStats()
        self.alpha = AlphaAccumulator()
        self.shards: list[CacheShard | None] = [
            cache.shard(self.kind, judge.endpoint.model, judge.prompt.version, day, cell_model_slug) if cache else None
            for judge in judges
        ]
        labels = [judge.endpoint.label for judge in judges]
        if len(set(labels)) != len(labels):
            raise ValueError(f"judge labels must be unique: {labels}")

    @property
    def configured(self) -> bool:
        return bool(self.judges)

    @property
    def judge_model(self) -> str | None:
        return ",".join(judge.endpoint.model for judge in self.judges) or None

    def _cached(self, judge_index: int, row: TraceInput) -> tuple[str, dict] | None:
        """(key, payload) of the cached answer to the request this judge would send for ``row``.

        Before the endpoint's structured-output mode is detected in this run, the
        request may go out in any mode: the newest answer to any of them is taken.
        """
        shard = self.shards[judge_index]
        if shard is None:
            return None
        found = None
        for key in self.judges[judge_index].cache_keys(row.question, row.answer).values():
            payload = shard.get(key)
            if payload is not None and (found is None or payload.get("scored_at", "") > found[1].get("scored_at", "")):
                found = (key, payload)
        return found

    async def _ask(self, judge_index: int, row: TraceInput, previous: tuple[str, dict] | None) -> JudgeOutcome:
        judge = self.judges[judge_index]
        outcome = await judge.judge(row.question, row.answer)
        self.stats.units_asked += 1
        shard = self.shards[judge_index]
        if shard is not None and outcome.status != NOT_CONFIGURED:
            if outcome.mode is not None:  # None: no request was sent
                key = judge.cache_keys(row.question, row.answer, (outcome.mode,))[outcome.mode]
                # A retry of the same request counts on; another request (another mode) starts afresh.
                outcome.tries = cached_tries(previous[1]) + 1 if previous and previous[0] == key else 1
                shard.put(key, outcome.to_payload(), trace_id=row.trace_id)
        return outcome

    async def score_chunk(self, rows: list[TraceInput]) -> pa.RecordBatch:
        votes: list[list[JudgeOutcome | None]] = [[None] * len(self.judges) for _ in rows]
        jobs, slots = [], []
        for i, row in enumerate(rows):
            retried = final_non_ok = False
            for j, shard in enumerate(self.shards):
                cached = self._cached(j, row)
                if cached is not None:
                    key, payload = cached
                    if _settled(payload["status"], payload, self.max_tries, SETTLED_JUDGE_STATUSES):
                        votes[i][j] = JudgeOutcome.from_payload(payload)
                        self.stats.cache_hits += 1
                        final_non_ok |= payload["status"] != OK
                        shard.attribute(key, row.trace_id)  # erasable by this trace too
                        continue
                    retried = True  # not ok, tries left: ask again
                jobs.append(self._ask(j, row, cached))
                slots.append((i, j))
            self.stats.rows_retried_from_cache += retried
            self.stats.rows_final_non_ok_from_cache += final_non_ok
        for (i, j), outcome in zip(slots, await asyncio.gather(*jobs)):
            votes[i][j] = outcome
        return pa.RecordBatch.from_pylist([self._row(row, v) for row, v in zip(rows, votes)], schema=JUDGE_SCORES_SCHEMA)

    def _unconfigured(self, rows: int) -> dict:
        """Counts ``rows`` rows that no judge could score; their score values."""
        self.stats.rows += rows
        self.stats.statuses[NOT_CONFIGURED] += rows
        self.stats.add_score(None, rows)
        return {"status": NOT_CONFIGURED, "judge_count": 0, "judge_ok": 0, "judges": [],
                "error": "no judge endpoint configured", "attempts": 0}

    def unconfigured_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The score rows of ``batch`` when no judge is configured: nothing to ask, so no per-row work."""
        values = {"prompt_version": self.prompt_version, **self._unconfigured(batch.num_rows)}
        return _same_rows(batch, values, JUDGE_SCORES_SCHEMA)

    def _row(self, row: TraceInput, votes: list[JudgeOutcome]) -> dict:
        base = {
            "trace_id": row.trace_id,
            "observation_id": row.observation_id,
            "content_hash": row.content_hash,
            "date": row.date,
            "model_slug": row.model_slug,
            "prompt_version": self.prompt_version,
        }
        if not votes:
            return {**base, **self._unconfigured(1)}
        self.stats.rows += 1
        verdict = aggregate([(v.score, v.status) for v in votes], self.aggregate_method, self.quorum)
        self.alpha.add([v.score if v.status == OK else None for v in votes])
        self.stats.statuses[verdict.status] += 1
        self.stats.add_score(verdict.score)
        ok_votes = [v for v in votes if v.status == OK]
        reasoning = None
        if verdict.score is not None and ok_votes:
            closest = min(ok_votes, key=lambda v: abs(v.score - verdict.score))
            reasoning = closest.reasoning
        elif len(votes) == 1:
            reasoning = votes[0].reasoning
        errors = [
            (f"{judge.endpoint.label}: {vote.error}" if len(votes) > 1 else vote.error)
            for judge, vote in zip(self.judges, votes)
            if vote.error and vote.status != OK
        ]
        latencies = [v.latency_ms for v in votes if v.latency_ms is not None]
        return {
            **base,
            "judge_score": verdict.score,
            "judge_reasoning": reasoning,
            "judge_model": self.judge_model,
            "status": verdict.status,
            "attempts": sum(v.attempts for v in votes),
            "latency_ms": max(latencies) if latencies else None,
            "judge_aggregate": "single" if len(votes) == 1 else self.aggregate_method,
            "judge_count": len(votes),
            "judge_ok": verdict.n_ok,
            "judge_disagreement": verdict.disagreement,
            "judges": [
                {
                    "judge": judge.endpoint.label,
                    "model": judge.endpoint.model,
                    "score": vote.score,
                    "status": vote.status,
                    "raw_score": vote.raw_score,
                    "reasoning": vote.reasoning,
                    "attempts": vote.attempts,
                    "latency_ms": vote.latency_ms,
                    "cached": vote.cached,
                    "error": vote.error,
                }
                for judge, vote in zip(self.judges, votes)
            ],
            "input_tokens": sum(v.input_tokens for v in votes),
            "output_tokens": sum(v.output_tokens for v in votes),
            "error": "; ".join(errors) or None,
            "scored_at": max(v.scored_at for v in votes),
        }

    def finish(self) -> None:
        for shard in self.shards:
            if shard is not None:
                shard.close()

    async def aclose(self) -> None:
        for judge in self.judges:
            await judge.aclose()

    def metadata(self) -> dict:
        stats = self.stats
        scored = stats.rows - stats.statuses.get(NOT_CONFIGURED, 0)
        return {
            "rows_scored": stats.rows,
            "judge_model": self.judge_model or "not configured",
            "judges": len(self.judges),
            "aggregate": ("single" if len(self.judges) == 1 else self.aggregate_method) if self.judges else "none",
            "quorum": self.quorum if self.judges else 0,
            "structured_output": {judge.endpoint.label: judge.mode or "undetected" for judge in self.judges},
            "prompt_version": self.prompt_version,
            "judge_calls_asked": stats.units_asked,
            "cache_hits": stats.cache_hits,
            "rows_retried_from_cache": stats.rows_retried_from_cache,
            "rows_final_non_ok_from_cache": stats.rows_final_non_ok_from_cache,
            "non_ok_max_tries": self.max_tries,
            **endpoint_metadata(judge.stats for judge in self.judges),
            "status_counts": dict(sorted(stats.statuses.items())),
            "failures_by_status": {k: v for k, v in sorted(stats.statuses.items()) if k != OK},
            "non_ok_share": round((scored - stats.statuses.get(OK, 0)) / scored, 4) if scored else 0.0,
            "score_histogram": stats.histogram_metadata(),
            "krippendorff_alpha": round(a, 4) if (a := self.alpha.alpha()) is not None else None,
            "alpha_units": self.alpha.units,
        }




class RagasCellScorer:
    """The three Ragas metrics over one cell."""

    kind = "ragas"

    def __init__(
        self,
        scorer: RagasScorer,
        *,
        weights: dict[str, float] | None = None,
        cache: ScoreCache | None = None,
        day: str = "",
        cell_model_slug: str = "",
        max_tries: int = DEFAULT_MAX_TRIES,
    ) -> None:
        self.scorer = scorer
        self.weights = weights or DEFAULT_WEIGHTS
        self.max_tries = _check_max_tries(max_tries)
        self.prompt_version = scorer.prompt_version
        self.stats = CellStats(metric_statuses={name: Counter() for name in RAGAS_METRICS})
        llm_model, embeddings_model = scorer.model_names
        self.shard = (
            cache.shard(self.kind, f"{llm_model}+{embeddings_model}", self.prompt_version, day, cell_model_slug)
            if cache is not None and scorer.configured
            else None
        )

    @property
    def configured(self) -> bool:
        return self.scorer.configured

    def cache_key(self, row: TraceInput) -> str:
        """What Ragas is given (question, answer, contexts: the text after redaction), the metric set
        and Ragas version with our settings (``prompt_version``), and both models."""
        llm_model, embeddings_model = self.scorer.model_names
        return content_key(
            "ragas", self.prompt_version, llm_model, embeddings_model, row.question, row.answer, list(row.contexts)
        )

    async def _score(self, row: TraceInput) -> RagasOutcome:
        key = self.cache_key(row) if self.shard is not None else None
        cached = self.shard.get(key) if self.shard is not None else None
        tries = 0
        if cached is not None:
            outcome = RagasOutcome.from_payload(cached)
            tries = cached_tries(cached)
            if _settled(outcome.status, cached, self.max_tries, SETTLED_RAGAS_STATUSES):
                self.stats.cache_hits += 1
                self.stats.rows_final_non_ok_from_cache += outcome.status not in SETTLED_RAGAS_STATUSES
                self.shard.attribute(key, row.trace_id)  # erasable by this trace too
                return outcome
            self.stats.rows_retried_from_cache += 1  # not ok, tries left: ask again
        outcome = await self.scorer.score(row.question, row.answer, row.contexts)
        if self.scorer.configured:
            self.stats.units_asked += 1
        if self.shard is not None and outcome.status != NOT_CONFIGURED:
            self.shard.put(key, {**outcome.to_payload(), TRIES: tries + 1}, trace_id=row.trace_id)
        return outcome

    async def score_chunk(self, rows: list[TraceInput]) -> pa.RecordBatch:
        outcomes = await asyncio.gather(*(self._score(row) for row in rows))
        return pa.RecordBatch.from_pylist([self._row(r, o) for r, o in zip(rows, outcomes)], schema=RAGAS_SCORES_SCHEMA)

    def _count(self, outcome: RagasOutcome, reward: float | None, rows: int = 1) -> None:
        self.stats.rows += rows
        self.stats.statuses[outcome.status] += rows
        self.stats.add_score(reward, rows)
        for name, metric in outcome.metrics.items():
            self.stats.metric_statuses[name][metric.status] += rows

    def unconfigured_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The score rows of ``batch`` when no Ragas endpoint is configured: one outcome for all."""
        outcome = not_configured_outcome()
        reward = outcome.reward(self.weights)
        self._count(outcome, reward, batch.num_rows)
        return _same_rows(batch, self._values(None, outcome, reward), RAGAS_SCORES_SCHEMA)

    def _row(self, row: TraceInput, outcome: RagasOutcome) -> dict:
        reward = outcome.reward(self.weights)
        self._count(outcome, reward)
        return self._values(row, outcome, reward)

    def _values(self, row: TraceInput | None, outcome: RagasOutcome, reward: float | None) -> dict:
        llm_model, embeddings_model = self.scorer.model_names
        status = outcome.status
        identity = {name: getattr(row, name) for name in IDENTITY_COLUMNS} if row is not None else {}
        return {
            **identity,
            **{name: outcome.metrics[name].value for name in RAGAS_METRICS},
            **{f"{name}_status": outcome.metrics[name].status for name in RAGAS_METRICS},
            "ragas_reward": reward,
            "status": status,
            "ragas_model": llm_model,
            "embeddings_model": embeddings_model,
            "prompt_version": self.prompt_version,
            "attempts": outcome.attempts,
            "latency_ms": outcome.latency_ms,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
            "error": outcome.error,
            "scored_at": outcome.scored_at if self.scorer.configured else None,
        }

    def finish(self) -> None:
        if self.shard is not None:
            self.shard.close()

    async def aclose(self) -> None:
        await self.scorer.aclose()

    def metadata(self) -> dict:
        stats = self.stats
        scored = stats.rows - stats.statuses.get(NOT_CONFIGURED, 0)
        llm_model, embeddings_model = self.scorer.model_names
        return {
            "rows_scored": stats.rows,
            "ragas_model": llm_model or "not configured",
            "embeddings_model": embeddings_model or "not configured",
            "prompt_version": self.prompt_version,
            "weights": dict(self.weights),
            "traces_asked": stats.units_asked,
            "cache_hits": stats.cache_hits,
            "rows_retried_from_cache": stats.rows_retried_from_cache,
            "rows_final_non_ok_from_cache": stats.rows_final_non_ok_from_cache,
            "non_ok_max_tries": self.max_tries,
            **endpoint_metadata(self.scorer.endpoint_stats().values()),
            "status_counts": dict(sorted(stats.statuses.items())),
            "failures_by_status": {k: v for k, v in sorted(stats.statuses.items()) if k != OK},
            "metric_status_counts": {name: dict(sorted(c.items())) for name, c in stats.metric_statuses.items()},
            "non_ok_share": round((scored - stats.statuses.get(OK, 0)) / scored, 4) if scored else 0.0,
            "score_histogram": stats.histogram_metadata(),
        }


def chunk_inputs(batches: Iterable[pa.RecordBatch], chunk_rows: int) -> Iterator[list[TraceInput]]:
    pending: list[TraceInput] = []
    for batch in batches:
        pending.extend(trace_inputs(batch))
        while len(pending) >= chunk_rows:
            yield pending[:chunk_rows]
            pending = pending[chunk_rows:]
    if pending:
        yield pending


def score_stream(
    scorer: CellScorer, batches: Iterable[pa.RecordBatch], chunk_rows: int = 256, prefetch: int = 2
) -> Iterator[pa.RecordBatch]:
    """Score rows of ``batches`` chunk by chunk; closes the scorer's clients at the end."""
    loop = asyncio.new_event_loop()
    pending: deque = deque()
    try:
        if not scorer.configured:  # nothing to ask: every row's outcome is the same
            for batch in batches:
                if batch.num_rows:
                    yield scorer.unconfigured_batch(batch)
            return
        for chunk in chunk_inputs(batches, chunk_rows):
            pending.append(loop.create_task(scorer.score_chunk(chunk)))
            while len(pending) > prefetch:
                yield loop.run_until_complete(pending.popleft())
        while pending:
            yield loop.run_until_complete(pending.popleft())
    finally:
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        try:
            scorer.finish()  # keep what was paid for, even when the run fails later
        finally:
            loop.run_until_complete(scorer.aclose())
            loop.close()
