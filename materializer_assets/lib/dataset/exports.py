"""Training exports of ``reward_dataset`` in the formats trainers load.

Column layouts follow TRL's dataset-format reference,
https://huggingface.co/docs/trl/dataset_formats ("Dataset formats and types"):

- **SFT** — language modeling, conversational: ``messages`` = the prompt side
  plus the final assistant turn. Standard form (``conversational=False``):
  prompt-completion, ``prompt`` (last user turn) / ``completion``.
- **DPO** — preference: ``prompt`` / ``chosen`` / ``rejected``; conversational
  form ``prompt`` = list of messages before the final assistant turn (the
  chosen row's; "up to the last user turn" plus any tool turns after it),
  ``chosen`` / ``rejected`` = ``[{"role": "assistant", ...}]``. Plus ``margin``.
- **KTO** — unpaired preference: ``prompt`` / ``completion`` / ``label`` (bool):
  ``preferred`` → True, ``non_preferred`` → False, neutral and unlabeled left out.
- **GRPO** — prompt-only: ``prompt``, plus ``reference`` (the logged response)
  and reward columns (``final_reward``, ``ragas_reward``, ``judge_score``,
  ``label``): TRL passes extra dataset columns to reward functions as keyword
  arguments.
- **Router** — LLMRouter training data (our seed 002): ``query``,
  ``model_name``, ``performance`` (= final_reward), ``response_time``
  (seconds), ``token_num``, and ``response``, ``input_tokens``,
  ``output_tokens``, ``task_name``, ``ground_truth``, ``metric``; the router
  CLI reads JSONL (:func:`router_jsonl_lines`).

Every export carries lineage columns (``trace_id``/``observation_id`` — for DPO
``chosen_*``/``rejected_*`` — and ``split``); trainers ignore extra columns.
Only ``train`` and ``test`` rows are exported (``excluded`` rows never are).
Rows without a prompt or without a response are skipped (counted under
``no_prompt`` / ``no_response`` when a ``skipped`` Counter is passed). Tool
calls appear as their JSON text in ``content``, the way ``response`` carries
them; read ``reward_dataset.messages`` for the structured form.

Every builder is row-wise (a batch in, a table out, constant memory) except
DPO, which needs the cell's pairs (:mod:`.pairs`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .rewards import NON_PREFERRED, PREFERRED
from .schema import CHAT_TYPE, SPLITS, TEST, TRAIN
from .text import Message, RowTexts, iter_row_texts

TRL_DATASET_FORMATS_URL = "https://huggingface.co/docs/trl/dataset_formats"

EXPORTS = ("sft", "dpo", "kto", "grpo", "router")

_LINEAGE = [
    pa.field("trace_id", pa.string(), nullable=False),
    pa.field("observation_id", pa.string()),
    pa.field("split", pa.string(), nullable=False),
]


def _prompt_type(conversational: bool) -> pa.DataType:
    return CHAT_TYPE if conversational else pa.string()


def sft_schema(conversational: bool = True) -> pa.Schema:
    head = [pa.field("messages", CHAT_TYPE)] if conversational else [pa.field("prompt", pa.string()), pa.field("completion", pa.string())]
    return pa.schema(head + _LINEAGE + [pa.field("final_reward", pa.float64()), pa.field("label", pa.string())])


def dpo_schema(conversational: bool = True) -> pa.Schema:
    kind = _prompt_type(conversational)
    return pa.schema(
        [
            pa.field("prompt", kind),
            pa.field("chosen", kind),
            pa.field("rejected", kind),
            pa.field("margin", pa.float64()),
            pa.field("chosen_reward", pa.float64()),
            pa.field("rejected_reward", pa.float64()),
            pa.field("chosen_trace_id", pa.string()),
            pa.field("chosen_observation_id", pa.string()),
            pa.field("rejected_trace_id", pa.string()),
            pa.field("rejected_observation_id", pa.string()),
            pa.field("split", pa.string()),
        ]
    )


def kto_schema(conversational: bool = True) -> pa.Schema:
    kind = _prompt_type(conversational)
    return pa.schema(
        [pa.field("prompt", kind), pa.field("completion", kind), pa.field("label", pa.bool_())]
        + _LINEAGE
        + [pa.field("final_reward", pa.float64())]
    )


def grpo_schema(conversational: bool = True) -> pa.Schema:
    return pa.schema(
        [
            pa.field("prompt", _prompt_type(conversational)),
            pa.field("reference", pa.string()),
            pa.field("final_reward", pa.float64()),
            pa.field("ragas_reward", pa.float64()),
            pa.field("judge_score", pa.float64()),
            pa.field("label", pa.string()),
        ]
        + _LINEAGE
    )


ROUTER_SCHEMA = pa.schema(
    [
        pa.field("query", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("response", pa.string()),
        pa.field("performance", pa.float64()),
        pa.field("response_time", pa.float64()),  # seconds
        pa.field("token_num", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("task_name", pa.string()),
        pa.field("ground_truth", pa.string()),
        pa.field("metric", pa.string()),
    ]
    + _LINEAGE
    + [pa.field("reward_source", pa.string())]
)


def _table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _exported_rows(batch: pa.RecordBatch | pa.Table, mask: pa.ChunkedArray | pa.Array | None = None) -> pa.Table:
    """Only train/test rows (and ``mask`` where given)."""
    table = _table(batch)
    keep = pc.is_in(table.column("split"), pa.array(SPLITS))
    if mask is not None:
        keep = pc.and_(keep, mask)
    return table.filter(pc.fill_null(keep, False)).combine_chunks()


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def _chat(messages: Sequence[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _last_user_turn(texts: RowTexts, prompt: str | None) -> str | None:
    if prompt:
        return prompt
    for message in reversed(texts.prompt_messages):
        if message.role == "user":
            return message.content
    return texts.dialogue or None


def _usable(texts: RowTexts, skipped: Counter | None) -> bool:
    if not texts.dialogue.strip():
        if skipped is not None:
            skipped["no_prompt"] += 1
        return False
    if not texts.response.strip():
        if skipped is not None:
            skipped["no_response"] += 1
        return False
    return True


def sft_table(
    batch: pa.RecordBatch | pa.Table,
    *,
    labels: Sequence[str] | None = (PREFERRED,),
    conversational: bool = True,
    skipped: Counter | None = None,
) -> pa.Table:
    """SFT rows. ``labels``: which labels to train on (default: preferred only,
    so a bad answer is never imitated); None takes every train/test row."""
    table = _table(batch)
    mask = pc.is_in(table.column("label"), pa.array(list(labels), pa.string())) if labels is not None else None
    table = _exported_rows(table, mask)
    prompts, records = _column(table, "prompt"), []
    lineage = _lineage(table)
    for i, texts in enumerate(iter_row_texts(table)):
        if not _usable(texts, skipped):
            continue
        if conversational:
            record = {"messages": _chat(texts.prompt_messages) + [{"role": "assistant", "content": texts.response}]}
        else:
            record = {"prompt": _last_user_turn(texts, prompts[i]), "completion": texts.response}
        records.append({**record, **lineage[i]})
    return pa.Table.from_pylist(records, schema=sft_schema(conversational))


def _lineage(table: pa.Table) -> list[dict]:
    columns = {name: _column(table, name) for name in ("trace_id", "observation_id", "split", "final_reward", "label")}
    return [{name: values[i] for name, values in columns.items()} for i in range(table.num_rows)]


def kto_table(batch: pa.RecordBatch | pa.Table, *, conversational: bool = True, skipped: Counter | None = None) -> pa.Table:
    """KTO rows: preferred → label True, non_preferred → False; neutral/unlabeled left out."""
    table = _table(batch)
    table = _exported_rows(table, pc.is_in(table.column("label"), pa.array([PREFERRED, NON_PREFERRED])))
    prompts, lineage, records = _column(table, "prompt"), _lineage(table), []
    for i, texts in enumerate(iter_row_texts(table)):
        if not _usable(texts, skipped):
            continue
        if conversational:
            prompt, completion = _chat(texts.prompt_messages), [{"role": "assistant", "content": texts.response}]
        else:
            prompt, completion = _last_user_turn(texts, prompts[i]), texts.response
        row = lineage[i]
        records.append(
            {
                "prompt": prompt,
                "completion": completion,
                "label": row["label"] == PREFERRED,
                "trace_id": row["trace_id"],
                "observation_id": row["observation_id"],
                "split": row["split"],
                "final_reward": row["final_reward"],
            }
        )
    return pa.Table.from_pylist(records, schema=kto_schema(conversational))


def grpo_table(batch: pa.RecordBatch | pa.Table, *, conversational: bool = True, skipped: Counter | None = None) -> pa.Table:
    """GRPO prompt-only rows with the logged response as ``reference`` and the reward columns."""
    table = _exported_rows(batch)
    prompts, lineage, records = _column(table, "prompt"), _lineage(table), []
    ragas, judge = _column(table, "ragas_reward"), _column(table, "judge_score")
    for i, texts in enumerate(iter_row_texts(table)):
        if not _usable(texts, skipped):
            continue
        records.append(
            {
                "prompt": _chat(texts.prompt_messages) if conversational else _last_user_turn(texts, prompts[i]),
                "reference": texts.response,
                "ragas_reward": ragas[i],
                "judge_score": judge[i],
                **lineage[i],
            }
        )
    return pa.Table.from_pylist(records, schema=grpo_schema(conversational))


def dpo_table(pairs: pa.Table, *, conversational: bool = True) -> pa.Table:
    """DPO rows from :func:`.pairs.build_pairs` output."""
    records = []
    for pair in pairs.to_pylist():
        if conversational:
            prompt = pair["prompt_messages"]
            chosen = [{"role": "assistant", "content": pair["chosen"]}]
            rejected = [{"role": "assistant", "content": pair["rejected"]}]
        else:
            prompt = pair["prompt"] or "\n".join(m["content"] for m in pair["prompt_messages"] if m["role"] == "user")
            chosen, rejected = pair["chosen"], pair["rejected"]
        records.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                **{name: pair[name] for name in dpo_schema().names if name not in ("prompt", "chosen", "rejected")},
            }
        )
    return pa.Table.from_pylist(records, schema=dpo_schema(conversational))


def router_table(
    batch: pa.RecordBatch | pa.Table,
    *,
    task_name: str = "production",
    metric: str = "custom",
    skipped: Counter | None = None,
) -> pa.Table:
    """LLMRouter rows; rows without a final reward are skipped (the seed's "skip
    traces without performance labels"), counted under ``no_reward``."""
    table = _table(batch)
    table = _exported_rows(table)
    has_reward = pc.is_valid(table.column("final_reward"))
    if skipped is not None:
        skipped["no_reward"] += table.num_rows - (pc.sum(has_reward).as_py() or 0)
    table = table.filter(has_reward)
    columns = {
        name: _column(table, name)
        for name in ("prompt", "model", "latency_ms", "total_tokens", "input_tokens", "output_tokens", "final_reward", "reward_source")
    }
    lineage, records = _lineage(table), []
    for i, texts in enumerate(iter_row_texts(table)):
        if not _usable(texts, skipped):
            continue
        total = columns["total_tokens"][i]
        if total is None and columns["input_tokens"][i] is not None and columns["output_tokens"][i] is not None:
            total = columns["input_tokens"][i] + columns["output_tokens"][i]
        latency = columns["latency_ms"][i]
        records.append(
            {
                "query": _last_user_turn(texts, columns["prompt"][i]),
                "model_name": columns["model"][i],
                "response": texts.response,
                "performance": columns["final_reward"][i],
                "response_time": latency / 1000.0 if latency is not None else None,
                "token_num": total,
                "input_tokens": columns["input_tokens"][i],
                "output_tokens": columns["output_tokens"][i],
                "task_name": task_name,
                "ground_truth": "",
                "metric": metric,
                "trace_id": lineage[i]["trace_id"],
                "observation_id": lineage[i]["observation_id"],
                "split": lineage[i]["split"],
                "reward_source": columns["reward_source"][i],
            }
        )
    return pa.Table.from_pylist(records, schema=ROUTER_SCHEMA)


def router_jsonl_lines(table: pa.Table) -> Iterator[str]:
    """One JSON object per row (``routing_{train,test}_data.jsonl`` lines, newline included)."""
    for batch in table.to_batches():
        for row in batch.to_pylist():
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            yield json.dumps(clean, ensure_ascii=False) + "\n"


def by_split(table: pa.Table) -> dict[str, pa.Table]:
    """``{"train": …, "test": …}`` (each may be empty): one file per split for trainers."""
    return {split: table.filter(pc.equal(table.column("split"), split)) for split in (TRAIN, TEST)}
