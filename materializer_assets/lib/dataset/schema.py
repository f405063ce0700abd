"""The Arrow schema of ``reward_dataset``: one row per consented trace.

The row keeps what the exports need (the conversation, the response, the
model, latency and tokens), the reward with every component it came from,
the label, the split, and the lineage that leads back to the Langfuse trace
(``trace_id``/``observation_id``/``source``), to the Iceberg snapshot it was
read from and to the judge call (``judge_model`` + ``prompt_version`` +
``content_hash`` is the judge cache key) and the Ragas settings.

Rows removed from training (exact duplicates, test rows that near-duplicate a
train prompt) stay in the table with ``split = "excluded"`` and the reason in
``excluded_reason``: the table is the full record of what was scored; the
exports read only ``train`` and ``test``.

Columns are only ever appended at the end (Iceberg evolves with
``union_by_name``).
"""

from __future__ import annotations

import pyarrow as pa

from ..schema import NORMALIZED_SCHEMA

TRAIN = "train"
TEST = "test"
EXCLUDED = "excluded"
SPLITS = (TRAIN, TEST)

# excluded_reason values
EXCLUDED_DUPLICATE = "duplicate"  # same prompt side + response as a kept row
EXCLUDED_NEAR_DUPLICATE = "near_duplicate_of_train"  # a test row whose prompt near-duplicates a train prompt
# a train row whose prompt near-duplicates a test prompt already published in another cell
EXCLUDED_NEAR_DUPLICATE_OF_TEST = "near_duplicate_of_test"


def _normalized(*names: str) -> list[pa.Field]:
    """Fields carried over from the normalized trace, taken from its schema so they cannot drift."""
    return [NORMALIZED_SCHEMA.field(name) for name in names]


REWARD_DATASET_SCHEMA = pa.schema(
    [
        # identity and partition
        *_normalized(
            "trace_id",
            "observation_id",
            "timestamp",
            "date",
            "model",
            "model_slug",
            "user_id",
            "session_id",
            "environment",
        ),
        # the training example
        *_normalized(
            "messages",
            "prompt",
            "response",
            "contexts",
            "tools",
            "latency_ms",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cost_usd",
            "content_hash",
        ),
        # consent lineage (checked: consent = true and a recorded source on every row)
        *_normalized("consent", "consent_source"),
        # reward components and result
        pa.field("ragas_reward", pa.float64()),
        pa.field("ragas_status", pa.string()),
        pa.field("judge_score", pa.float64()),
        pa.field("judge_status", pa.string()),
        *_normalized("feedback_score"),  # raw, as the source gave it
        pa.field("feedback_reward", pa.float64()),  # normalized to [0, 1]
        pa.field("feedback_status", pa.string()),
        pa.field("final_reward", pa.float64()),
        pa.field("reward_source", pa.string()),  # e.g. "ragas+judge"
        pa.field("label", pa.string()),  # preferred / neutral / non_preferred; null = unlabeled
        # split
        pa.field("split", pa.string(), nullable=False),  # train / test / excluded
        pa.field("split_key", pa.string(), nullable=False),  # HMAC-SHA256(secret salt, "user_id:<id>") hex, never the raw id
        pa.field("excluded_reason", pa.string()),
        # lineage
        *_normalized("source"),
        pa.field("iceberg_snapshot_id", pa.int64()),
        pa.field("judge_model", pa.string()),
        pa.field("prompt_version", pa.string()),  # the judge prompt's version
        pa.field("ragas_version", pa.string()),  # ragas package version + settings hash
        pa.field("reward_spec", pa.string()),  # weights, counted scorers, thresholds, feedback scale (JSON)
        pa.field("split_spec", pa.string()),  # grouping, fraction, salt, near-dup settings (JSON)
        # why final_reward and label are null: "<scorer>_<status>" of each configured scorer that was
        # not ok ("ragas_error", "judge_not_scored", …; several joined by "+"), or "no_component"
        pa.field("unlabeled_reason", pa.string()),
    ]
)

REWARD_COLUMN_NAMES: tuple[str, ...] = tuple(REWARD_DATASET_SCHEMA.names)

# Columns copied unchanged from the normalized trace (and its joined scores) when present:
# every trace field of the reward schema, plus the scorers' results and versions.
PASSTHROUGH_COLUMNS: tuple[str, ...] = tuple(name for name in REWARD_COLUMN_NAMES if name in NORMALIZED_SCHEMA.names) + (
    "ragas_reward",
    "ragas_status",
    "judge_score",
    "judge_status",
    "judge_model",
    "prompt_version",
    "ragas_version",
)

# Text columns: no statistics, no dictionary when written to Parquet.
TEXT_COLUMNS: tuple[str, ...] = ("messages", "prompt", "response", "contexts", "tools")

# A chat message as TRL's conversational formats expect it: {"role", "content"}.
# Tool calls are carried as their JSON text in ``content`` (as ``response`` already does).
CHAT_MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
CHAT_TYPE = pa.list_(CHAT_MESSAGE_TYPE)
