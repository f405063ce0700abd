"""Training exports of ``reward_dataset`` in the formats trainers load.

Column layouts are TRL's own, https://huggingface.co/docs/trl/dataset_formats
("Dataset formats and types", "Tool calling"); conversational by default:

- **SFT** — language modeling: ``messages`` = the prompt side plus the final
  assistant turn. Standard form (``conversational=False``): prompt-completion,
  ``prompt`` (last user turn) / ``completion``.
- **DPO** — preference: ``prompt`` (every message before the chosen row's
  final assistant turn) / ``chosen`` / ``rejected`` (``[assistant message]``),
  plus ``margin`` and the two rewards. Pairs come from :mod:`.pairs`.
- **KTO** — unpaired preference: ``prompt`` / ``completion`` / ``label``
  (bool): ``preferred`` → True, ``non_preferred`` → False, neutral and
  unlabeled rows left out.
- **GRPO** — prompt-only: ``prompt``, plus ``reference`` (the logged response
  as text) and the reward columns ``final_reward``, ``ragas_reward``,
  ``judge_score``: TRL passes extra columns to reward functions as keyword
  arguments.
- **Router** — LLMRouter training data (our seed 002): ``query``,
  ``model_name``, ``performance`` (= final_reward), ``response_time``
  (seconds), ``token_num``, and ``response``, ``input_tokens``,
  ``output_tokens``, ``task_name``, ``ground_truth``, ``metric``; the router
  CLI reads JSONL (:func:`router_jsonl_lines`).

Messages are structured as TRL's tool-calling format expects (see
:mod:`.chat`): an assistant turn that calls tools keeps ``tool_calls`` (with
their ids, ``arguments`` as JSON text), a tool result keeps ``tool_call_id``
and ``name``; the row's tool definitions are the ``tools`` column (JSON text
of the list of schemas, null when the row has none), which TRL's SFT, DPO and
KTO trainers hand to the chat template. A row never carries a key TRL gives
another meaning: ``label`` appears in KTO rows only (TRL's
``maybe_apply_chat_template`` rejects ``{"messages", "label"}`` and
``{"prompt", "label"}``).

Lineage stays in the rows, as columns TRL ignores: ``trace_id`` /
``observation_id`` (DPO: ``chosen_*`` / ``rejected_*``) and ``split``. TRL
1.16 checks only its own keys (``prompt``, ``chosen``, ``rejected``,
``completion``, ``messages``, ``label``) and its trainers drop the other
columns (checked with ``scripts/check_exports_with_trl.py``); the ids are also
what GDPR erasure finds an export's rows by.

Only ``train`` and ``test`` rows are exported (``excluded`` rows never are).
Rows without a prompt or without a response are skipped (counted under
``no_prompt`` / ``no_response`` when a ``skipped`` Counter is passed).

Every builder is row-wise (a batch in, a table out, constant memory) except
DPO, which needs the cell's pairs (:mod:`.pairs`). SFT, KTO and GRPO build plain
chats by columns (:mod:`.conversations`) and the other rows (tool calls, other
roles) one by one, with the same result.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .chat import TRL_CHAT_TYPE, has_answer, normalize_tools, split_conversation
from .conversations import Conversations, conversations
from .rewards import NON_PREFERRED, PREFERRED
from .schema import SPLITS, TEST, TRAIN
from .text import RowTexts, iter_row_texts

TRL_DATASET_FORMATS_URL = "https://huggingface.co/docs/trl/dataset_formats"

EXPORTS = ("sft", "dpo", "kto", "grpo", "router")
# Every export cell has one folder per split, each with at least one file (empty when the split has no rows).
EXPORT_SPLITS = (TRAIN, TEST)

_LINEAGE = [
    pa.field("trace_id", pa.string(), nullable=False),
    pa.field("observation_id", pa.string()),
    pa.field("split", pa.string(), nullable=False),
]
_TOOLS = pa.field("tools", pa.string())  # JSON text of [{"type": "function", "function": {...}}]


def _prompt_type(conversational: bool) -> pa.DataType:
    return TRL_CHAT_TYPE if conversational else pa.string()


def sft_schema(conversational: bool = True) -> pa.Schema:
    if conversational:
        head = [pa.field("messages", TRL_CHAT_TYPE), _TOOLS]
    else:
        head = [pa.field("prompt", pa.string()), pa.field("completion", pa.string())]
    return pa.schema(head + _LINEAGE)


def dpo_schema(conversational: bool = True) -> pa.Schema:
    kind = _prompt_type(conversational)
    return pa.schema(
        [pa.field("prompt", kind), pa.field("chosen", kind), pa.field("rejected", kind)]
        + ([_TOOLS] if conversational else [])
        + [
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
        + ([_TOOLS] if conversational else [])
        + _LINEAGE
        + [pa.field("final_reward", pa.float64())]
    )


def grpo_schema(conversational: bool = True) -> pa.Schema:
    return pa.schema(
        [pa.field("prompt", _prompt_type(conversational))]
        + ([_TOOLS] if conversational else [])
        + [
            pa.field("reference", pa.string()),
            pa.field("final_reward", pa.float64()),
            pa.field("ragas_reward", pa.float64()),
            pa.field("judge_score", pa.float64()),
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


def _exported_mask(table: pa.Table, mask: pa.ChunkedArray | pa.Array | None = None) -> np.ndarray:
    """Train/test rows (and ``mask`` where given)."""
    keep = pc.is_in(table.column("split"), pa.array(SPLITS))
    if mask is not None:
        keep = pc.and_(keep, mask)
    return np.asarray(pc.fill_null(keep, False), bool)


def _exported_rows(batch: pa.RecordBatch | pa.Table, mask: pa.ChunkedArray | pa.Array | None = None) -> pa.Table:
    """Only train/test rows (and ``mask`` where given)."""
    table = _table(batch)
    return table.filter(pa.array(_exported_mask(table, mask))).combine_chunks()


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


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


class _Rows:
    """The exported rows of a batch: texts (for skipping and the standard form), TRL
    conversations and tools, and the plain columns, row by row."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.texts = list(iter_row_texts(table))
        self.messages = _column(table, "messages")
        self.prompts = _column(table, "prompt")
        self.responses = _column(table, "response")
        self.tools = _column(table, "tools")
        self._columns: dict[str, list] = {}

    def value(self, name: str, i: int):
        if name not in self._columns:
            self._columns[name] = _column(self.table, name)
        return self._columns[name][i]

    def lineage(self, i: int) -> dict:
        return {name: self.value(name, i) for name in ("trace_id", "observation_id", "split")}

    def usable(self, i: int, skipped: Counter | None) -> bool:
        return _usable(self.texts[i], skipped)

    def conversation(self, i: int) -> tuple[list[dict], dict]:
        prompt, final = split_conversation(self.messages[i], self.prompts[i], self.responses[i])
        if not has_answer(final):  # the response column says more than the messages
            final = {"role": "assistant", "content": self.texts[i].response, "tool_calls": None, "tool_call_id": None, "name": None}
        return prompt, final

    def tools_json(self, i: int) -> str | None:
        return normalize_tools(self.tools[i])

    def standard_prompt(self, i: int) -> str | None:
        return _last_user_turn(self.texts[i], self.prompts[i])


def sft_table(
    batch: pa.RecordBatch | pa.Table,
    *,
    labels: Sequence[str] | None = (PREFERRED,),
    conversational: bool = True,
    skipped: Counter | None = None,
) -> pa.Table:
    """SFT rows. ``labels``: which labels to train on (default: preferred only,
    so a bad answer is never imitated); None takes every train/test row."""
    table = _table(batch).combine_chunks()
    mask = pc.is_in(table.column("label"), pa.array(list(labels), pa.string())) if labels is not None else None
    if not conversational:
        return _sft_rows(_exported_rows(table, mask), conversational=False, skipped=skipped)[0]
    chats, exported, rows = _plain_chats(table, mask, skipped)
    messages = _append_each(chats.prompts(rows), chats.finals(rows))
    fast = pa.Table.from_arrays(
        [messages, _normalized_tools(table, rows), *_taken(table, rows, ("trace_id", "observation_id", "split"))],
        schema=sft_schema(True),
    )
    return _merge_row_by_row(fast, rows, table, ~chats.fast & exported, lambda part: _sft_rows(part, conversational=True, skipped=skipped))


def _sft_rows(table: pa.Table, *, conversational: bool, skipped: Counter | None) -> tuple[pa.Table, list[int]]:
    """The per-row path: the rows, and the input row of each."""
    rows, records, origin = _Rows(table), [], []
    for i in range(rows.table.num_rows):
        if not rows.usable(i, skipped):
            continue
        if conversational:
            prompt, final = rows.conversation(i)
            record = {"messages": prompt + [final], "tools": rows.tools_json(i)}
        else:
            record = {"prompt": rows.standard_prompt(i), "completion": rows.texts[i].response}
        records.append({**record, **rows.lineage(i)})
        origin.append(i)
    return pa.Table.from_pylist(records, schema=sft_schema(conversational)), origin


def kto_table(batch: pa.RecordBatch | pa.Table, *, conversational: bool = True, skipped: Counter | None = None) -> pa.Table:
    """KTO rows: preferred → label True, non_preferred → False; neutral/unlabeled left out."""
    table = _table(batch).combine_chunks()
    mask = pc.is_in(table.column("label"), pa.array([PREFERRED, NON_PREFERRED]))
    if not conversational:
        return _kto_rows(_exported_rows(table, mask), conversational=False, skipped=skipped)[0]
    chats, exported, rows = _plain_chats(table, mask, skipped)
    finals = chats.finals(rows)
    completion = pa.ListArray.from_arrays(pa.array(np.arange(len(rows) + 1, dtype=np.int32)), finals, type=TRL_CHAT_TYPE)
    label, trace_id, observation_id, split, final_reward = _taken(table, rows, ("label", "trace_id", "observation_id", "split", "final_reward"))
    fast = pa.Table.from_arrays(
        [chats.prompts(rows), completion, pc.equal(label, PREFERRED), _normalized_tools(table, rows), trace_id, observation_id, split, final_reward],
        schema=kto_schema(True),
    )
    return _merge_row_by_row(fast, rows, table, ~chats.fast & exported, lambda part: _kto_rows(part, conversational=True, skipped=skipped))


def _kto_rows(table: pa.Table, *, conversational: bool, skipped: Counter | None) -> tuple[pa.Table, list[int]]:
    """The per-row path: the rows, and the input row of each."""
    rows, records, origin = _Rows(table), [], []
    for i in range(rows.table.num_rows):
        if not rows.usable(i, skipped):
            continue
        record = {"label": rows.value("label", i) == PREFERRED}
        if conversational:
            prompt, final = rows.conversation(i)
            record.update(prompt=prompt, completion=[final], tools=rows.tools_json(i))
        else:
            record.update(prompt=rows.standard_prompt(i), completion=rows.texts[i].response)
        records.append({**record, **rows.lineage(i), "final_reward": rows.value("final_reward", i)})
        origin.append(i)
    return pa.Table.from_pylist(records, schema=kto_schema(conversational)), origin


def _taken(table: pa.Table, rows: np.ndarray, names: Sequence[str], kind: pa.DataType | None = None) -> list[pa.Array]:
    """Each column's values at ``rows``; with ``kind``, cast to it, and an absent column is all null."""
    take = pa.array(rows, pa.int64())
    if kind is None:
        return [table.column(name).take(take) for name in names]
    return [
        table.column(name).take(take).combine_chunks().cast(kind) if name in table.column_names else pa.nulls(len(rows), kind)
        for name in names
    ]


def _append_each(lists: pa.ListArray, items: pa.Array) -> pa.ListArray:
    """Each list of ``lists`` with the item of its row appended."""
    offsets = np.asarray(lists.offsets, np.int64)
    sizes = np.diff(offsets)
    owner = np.concatenate([np.repeat(np.arange(len(lists)), sizes), np.arange(len(lists))])
    values = pa.concat_arrays([lists.values.slice(offsets[0], offsets[-1] - offsets[0]) if len(lists) else lists.values.slice(0, 0), items])
    order = np.argsort(owner, kind="stable")
    new_offsets = np.zeros(len(lists) + 1, np.int32)
    np.cumsum(sizes + 1, out=new_offsets[1:])
    return pa.ListArray.from_arrays(pa.array(new_offsets), values.take(pa.array(order, pa.int64())), type=lists.type)


def grpo_table(batch: pa.RecordBatch | pa.Table, *, conversational: bool = True, skipped: Counter | None = None) -> pa.Table:
    """GRPO prompt-only rows with the logged response as ``reference`` and the reward columns."""
    if not conversational:
        return _grpo_rows(_exported_rows(batch), conversational=False, skipped=skipped)[0]
    # Plain chats by columns (lib/dataset/conversations.py), the rest row by row. No filtered
    # copy of the batch first: each column is taken once, at the rows exported.
    table = _table(batch).combine_chunks()
    chats, exported, rows = _plain_chats(table, None, skipped)
    fast = pa.Table.from_arrays(
        [
            chats.prompts(rows),
            _normalized_tools(table, rows),
            chats.responses(rows),
            *_taken(table, rows, ("final_reward", "ragas_reward", "judge_score", "trace_id", "observation_id", "split")),
        ],
        schema=grpo_schema(True),
    )
    return _merge_row_by_row(
        fast, rows, table, ~chats.fast & exported, lambda part: _grpo_rows(part, conversational=True, skipped=skipped)
    )


def _plain_chats(
    table: pa.Table, mask: pa.ChunkedArray | pa.Array | None, skipped: Counter | None
) -> tuple[Conversations, np.ndarray, np.ndarray]:
    """The batch's conversations, its exported rows (a mask) and the plain chats an export keeps
    (row numbers); the fast rows' skips are counted here, the others' on the per-row path."""
    exported = _exported_mask(table, mask)
    chats = conversations(table)
    _count_skipped(skipped, chats.skip_counts(exported))
    return chats, exported, np.flatnonzero(chats.usable & exported)


def _count_skipped(skipped: Counter | None, counts: dict[str, int]) -> None:
    if skipped is not None:
        for reason, count in counts.items():
            if count:
                skipped[reason] += count


def _normalized_tools(table: pa.Table, rows: np.ndarray) -> pa.Array:
    if "tools" not in table.column_names:
        return pa.nulls(len(rows), pa.string())
    tools = table.column("tools").take(pa.array(rows, pa.int64())).to_pylist()
    return pa.array([normalize_tools(value) if value is not None else None for value in tools], pa.string())


def _merge_row_by_row(
    fast: pa.Table,
    fast_rows: np.ndarray,
    table: pa.Table,
    slow: np.ndarray,
    row_by_row: Callable[[pa.Table], tuple[pa.Table, list[int]]],
) -> pa.Table:
    """``fast`` (built from ``fast_rows``) and what ``row_by_row`` makes of the ``slow`` rows of
    ``table`` (its output rows and the input row of each), in the input's row order."""
    slow_rows = np.flatnonzero(slow)
    if not len(slow_rows):
        return fast
    built, built_from = row_by_row(table.take(pa.array(slow_rows, pa.int64())))
    origin = np.concatenate([fast_rows, slow_rows[np.asarray(built_from, np.int64)]])
    return pa.concat_tables([fast, built]).take(pa.array(np.argsort(origin, kind="stable"), pa.int64()))


def _grpo_rows(table: pa.Table, *, conversational: bool, skipped: Counter | None) -> tuple[pa.Table, list[int]]:
    """The per-row path: the rows, and the input row of each."""
    rows, records, origin = _Rows(table), [], []
    for i in range(rows.table.num_rows):
        if not rows.usable(i, skipped):
            continue
        if conversational:
            record = {"prompt": rows.conversation(i)[0], "tools": rows.tools_json(i)}
        else:
            record = {"prompt": rows.standard_prompt(i)}
        record.update(
            reference=rows.texts[i].response,
            final_reward=rows.value("final_reward", i),
            ragas_reward=rows.value("ragas_reward", i),
            judge_score=rows.value("judge_score", i),
        )
        records.append({**record, **rows.lineage(i)})
        origin.append(i)
    return pa.Table.from_pylist(records, schema=grpo_schema(conversational)), origin


def dpo_table(pairs: pa.Table, *, conversational: bool = True) -> pa.Table:
    """DPO rows from :func:`.pairs.build_pairs` output."""
    records = []
    extra = [name for name in dpo_schema().names if name not in ("prompt", "chosen", "rejected", "tools")]
    for pair in pairs.to_pylist():
        if conversational:
            record = {
                "prompt": pair["prompt_messages"],
                "chosen": [pair["chosen_message"]],
                "rejected": [pair["rejected_message"]],
                "tools": pair["tools"],
            }
        else:
            prompt = pair["prompt"] or "\n".join(m["content"] or "" for m in pair["prompt_messages"] if m["role"] == "user")
            record = {"prompt": prompt, "chosen": pair["chosen"], "rejected": pair["rejected"]}
        records.append({**record, **{name: pair[name] for name in extra}})
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
    table = _table(batch).combine_chunks()
    exported = _exported_mask(table)
    has_reward = np.asarray(pc.is_valid(table.column("final_reward")), bool)
    if skipped is not None:
        skipped["no_reward"] += int(np.count_nonzero(exported & ~has_reward))
    candidates = exported & has_reward
    chats = conversations(table)
    prompt_given = chats.prompt_given
    # The query is the prompt, else the last user turn; a row with neither goes row by row.
    fast = chats.fast & (prompt_given | chats.has_user_turn())
    usable_fast = fast & chats.has_prompt & chats.has_response & candidates
    _count_skipped(skipped, chats.skip_counts(fast & candidates))
    rows = np.flatnonzero(usable_fast)
    prompt = _taken(table, rows, ("prompt",), pa.string())[0]
    query = pc.if_else(pa.array(prompt_given[rows]), prompt, chats.last_user_turns(rows)) if len(rows) else pa.array([], pa.string())
    model, latency, total, inputs, outputs, reward, source, trace_id, observation_id, split = (
        _taken(table, rows, (name,), ROUTER_COLUMN_TYPES[name])[0]
        for name in ("model", "latency_ms", "total_tokens", "input_tokens", "output_tokens", "final_reward", "reward_source", "trace_id", "observation_id", "split")
    )
    k = len(rows)
    fast_table = pa.Table.from_arrays(
        [
            query, model, chats.responses(rows), reward,
            pc.divide(latency.cast(pa.float64()), 1000.0),
            pc.coalesce(total, pc.add(inputs, outputs)),
            inputs, outputs,
            pa.array([task_name] * k, pa.string()), pa.array([""] * k, pa.string()), pa.array([metric] * k, pa.string()),
            trace_id, observation_id, split, source,
        ],
        schema=ROUTER_SCHEMA,
    )
    return _merge_row_by_row(
        fast_table, rows, table, ~fast & candidates,
        lambda part: _router_rows(part, task_name=task_name, metric=metric, skipped=skipped),
    )


ROUTER_COLUMN_TYPES = {
    "model": pa.string(), "latency_ms": pa.int64(), "total_tokens": pa.int64(), "input_tokens": pa.int64(),
    "output_tokens": pa.int64(), "final_reward": pa.float64(), "reward_source": pa.string(),
    "trace_id": pa.string(), "observation_id": pa.string(), "split": pa.string(),
}


def _router_rows(table: pa.Table, *, task_name: str, metric: str, skipped: Counter | None) -> tuple[pa.Table, list[int]]:
    """The per-row path (rows with a final reward): the rows, and the input row of each."""
    columns = {
        name: _column(table, name)
        for name in ("prompt", "model", "latency_ms", "total_tokens", "input_tokens", "output_tokens", "final_reward", "reward_source")
    }
    lineage = {name: _column(table, name) for name in ("trace_id", "observation_id", "split")}
    records, origin = [], []
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
                "trace_id": lineage["trace_id"][i],
                "observation_id": lineage["observation_id"][i],
                "split": lineage["split"][i],
                "reward_source": columns["reward_source"][i],
            }
        )
        origin.append(i)
    return pa.Table.from_pylist(records, schema=ROUTER_SCHEMA), origin


def router_jsonl_lines(table: pa.Table) -> Iterator[str]:
    """One JSON object per row (``routing_{train,test}_data.jsonl`` lines, newline included)."""
    for batch in table.to_batches():
        for row in batch.to_pylist():
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
            yield json.dumps(clean, ensure_ascii=False) + "\n"


def by_split(table: pa.Table) -> dict[str, pa.Table]:
    """``{"train": …, "test": …}`` (each may be empty): one file per split for trainers."""
    return {split: table.filter(pc.equal(table.column("split"), split)) for split in (TRAIN, TEST)}


def data_files(cell: str) -> dict[str, list[str]]:
    """``load_dataset("parquet", data_files=…)`` for one export cell (a local folder): the
    files of each split that has rows, read from the cell's ``_manifest.json``.

    Both split folders always hold a file, but ``datasets`` refuses to build a split
    with no rows (``Instruction "test" corresponds to no data!``), so empty splits are
    left out; ``{}`` means the export has no row at all.
    """
    with open(posixpath.join(cell, "_manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    rows = manifest.get("rows_by_subpath") or {}
    return {
        split: sorted(posixpath.join(cell, f) for f in manifest["files"] if posixpath.dirname(f) == split)
        for split in EXPORT_SPLITS
        if rows.get(split)
    }
