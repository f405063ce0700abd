"""Score statuses and the Arrow schemas of ``judge_scores`` and ``ragas_scores``.

A score is either a number in [0, 1] with status ``ok`` or null with the
reason in its status: a failure never becomes a score (DESIGN §6).
"""

from __future__ import annotations

import pyarrow as pa

OK = "ok"
UNPARSEABLE = "unparseable"  # the reply had no readable score
OUT_OF_RANGE = "out_of_range"  # a score outside [0, 1] (or outside the scale the reply stated)
ERROR = "error"  # HTTP error, timeout or connection failure after retries
NOT_CONFIGURED = "not_configured"  # no endpoint configured: nothing was asked
# Judge committee only: some judges answered, fewer than the quorum.
NO_QUORUM = "no_quorum"
# Ragas only: the metric needs inputs the trace does not have (contexts).
NOT_APPLICABLE = "not_applicable"
# Ragas only: the metric ran but has no value (faithfulness of a reply without statements is NaN).
UNDETERMINED = "undetermined"
# Ragas only: the metric returned a number that measures nothing (answer relevancy is 0.0
# when the LLM generated no question from the response); kept null, never a score.
DEGENERATE = "degenerate"

JUDGE_STATUSES = (OK, UNPARSEABLE, OUT_OF_RANGE, ERROR, NOT_CONFIGURED, NO_QUORUM)
METRIC_STATUSES = (OK, UNPARSEABLE, OUT_OF_RANGE, ERROR, NOT_CONFIGURED, NOT_APPLICABLE, UNDETERMINED, DEGENERATE)

# When several outcomes must be summarised by one status, the most serious wins.
STATUS_PRECEDENCE = (
    ERROR, UNPARSEABLE, OUT_OF_RANGE, UNDETERMINED, DEGENERATE, NO_QUORUM, NOT_CONFIGURED, NOT_APPLICABLE, OK
)

# Outcomes worth remembering: asking again would give the same answer
# (errors and unconfigured rows are asked again on the next run).
CACHEABLE_STATUSES = frozenset({OK, UNPARSEABLE, OUT_OF_RANGE, UNDETERMINED, DEGENERATE, NOT_APPLICABLE})


def worst_status(statuses) -> str | None:
    present = set(statuses)
    for status in STATUS_PRECEDENCE:
        if status in present:
            return status
    return None


_IDENTITY = [
    pa.field("trace_id", pa.string(), nullable=False),
    pa.field("observation_id", pa.string()),
    pa.field("content_hash", pa.string(), nullable=False),
    pa.field("date", pa.string()),
    pa.field("model_slug", pa.string()),
]

JUDGE_VOTE_TYPE = pa.struct(
    [
        pa.field("judge", pa.string()),
        pa.field("model", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("status", pa.string()),
        pa.field("raw_score", pa.float64()),
        pa.field("reasoning", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("latency_ms", pa.float64()),
        pa.field("cached", pa.bool_()),
        pa.field("error", pa.string()),
    ]
)

JUDGE_SCORES_SCHEMA = pa.schema(
    _IDENTITY
    + [
        pa.field("judge_score", pa.float64()),
        pa.field("judge_reasoning", pa.string()),
        pa.field("judge_model", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("attempts", pa.int32()),
        pa.field("latency_ms", pa.float64()),
        # committee: "single", "mean" or "median"; each judge's vote is kept
        pa.field("judge_aggregate", pa.string()),
        pa.field("judge_count", pa.int32()),
        pa.field("judge_ok", pa.int32()),
        pa.field("judge_disagreement", pa.float64()),  # max − min of the judges' scores
        pa.field("judges", pa.list_(JUDGE_VOTE_TYPE)),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)

RAGAS_METRICS = ("faithfulness", "answer_relevancy", "context_precision")

RAGAS_SCORES_SCHEMA = pa.schema(
    _IDENTITY
    + [pa.field(name, pa.float64()) for name in RAGAS_METRICS]
    + [pa.field(f"{name}_status", pa.string(), nullable=False) for name in RAGAS_METRICS]
    + [
        pa.field("ragas_reward", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("ragas_model", pa.string()),
        pa.field("embeddings_model", pa.string()),
        pa.field("prompt_version", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("latency_ms", pa.float64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)

JUDGE_SCORE_COLUMNS = ("judge_score",)
RAGAS_SCORE_COLUMNS = RAGAS_METRICS + ("ragas_reward",)
