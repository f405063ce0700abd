"""DPO preference pairs from rows that answer the same (or a near-identical) prompt.

Rules, in order:

1. Candidates are ``train``/``test`` rows with a final reward and a prompt
   (excluded rows and unlabeled rows never pair).
2. Rows are grouped by (split, system prompt) — so a pair never crosses
   splits, and hence never crosses a user's split assignment — then by prompt:
   the same normalized dialogue text, merged with near-identical ones
   (MinHash, default Jaccard ≥ 0.85 — one changed word in a short question
   already falls below it; ``near_duplicates=None`` keeps only exact matches). Near-identical groups are merged by leader clustering in sorted
   order: a group joins the first leader it near-duplicates, so chains of
   small edits never link two unrelated prompts.
3. In each prompt group, ``chosen`` has the higher ``final_reward`` and
   ``rejected`` the lower; a pair needs ``margin = chosen − rejected`` > 0
   and ≥ ``min_margin`` (rounded to 9 decimals, like rewards). Ties are
   never emitted, nor *degenerate* pairs, whose answers are the same once
   case, whitespace and tool-call ids are left out (the same text, or the
   same tool calls with the same arguments under other call ids: see
   :func:`.chat.response_key`); these are dropped and counted.
4. At most ``max_pairs_per_prompt`` pairs per group, largest margins first
   (best-first search over the rows sorted by reward, so a big group costs
   O(k log k), not O(n²)); ties broken by (trace_id, observation_id).

The prompt of a pair is the chosen row's prompt side (every message before
its final assistant turn), structured as TRL's tool-calling format expects
(:mod:`.chat`), with the chosen row's tool definitions. Output order is deterministic: groups by
(split, group id), pairs by (−margin, chosen id, rejected id).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .near_duplicates import NearDuplicateConfig, near_duplicate_leaders
from .chat import TRL_CHAT_TYPE, TRL_MESSAGE_TYPE, has_answer, normalize_tools, response_key, split_conversation
from .schema import SPLITS
from .text import RowTexts, digest, iter_row_texts

ROUND_DECIMALS = 9

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("prompt_group", pa.string(), nullable=False),
        pa.field("prompt_messages", TRL_CHAT_TYPE, nullable=False),
        pa.field("prompt", pa.string()),  # the chosen row's last user turn (standard format)
        pa.field("chosen", pa.string(), nullable=False),  # the answers as text (standard format)
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("chosen_message", TRL_MESSAGE_TYPE, nullable=False),  # the answers as TRL messages
        pa.field("rejected_message", TRL_MESSAGE_TYPE, nullable=False),
        pa.field("tools", pa.string()),  # the chosen row's tool definitions (JSON text)
        pa.field("chosen_reward", pa.float64(), nullable=False),
        pa.field("rejected_reward", pa.float64(), nullable=False),
        pa.field("margin", pa.float64(), nullable=False),
        pa.field("chosen_trace_id", pa.string(), nullable=False),
        pa.field("chosen_observation_id", pa.string()),
        pa.field("rejected_trace_id", pa.string(), nullable=False),
        pa.field("rejected_observation_id", pa.string()),
    ]
)

PAIR_INPUT_COLUMNS = ("trace_id", "observation_id", "split", "final_reward", "messages", "prompt", "response", "tools")


@dataclass(frozen=True)
class PairConfig:
    min_margin: float = 0.2
    max_pairs_per_prompt: int = 4
    near_duplicates: NearDuplicateConfig | None = field(default_factory=lambda: NearDuplicateConfig(threshold=0.85))
    # Bound on candidate pairs examined per prompt group (identical responses are skipped, not counted as pairs).
    max_candidates_per_prompt: int = 10_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_margin <= 1.0:
            raise ValueError(f"min_margin must be in [0, 1], got {self.min_margin}")
        if self.max_pairs_per_prompt < 1:
            raise ValueError(f"max_pairs_per_prompt must be ≥ 1, got {self.max_pairs_per_prompt}")


@dataclass
class PairStats:
    rows: int = 0  # rows that could pair (train/test, reward, prompt)
    prompt_groups: int = 0
    groups_with_pairs: int = 0
    pairs: int = 0
    skipped_identical: int = 0  # degenerate candidate pairs: the same answer modulo case, whitespace, call ids
    groups_capped: int = 0  # groups that had more valid pairs than the cap

    def as_metadata(self) -> dict:
        return {
            "rows_pairable": self.rows,
            "prompt_groups": self.prompt_groups,
            "prompt_groups_with_pairs": self.groups_with_pairs,
            "pairs": self.pairs,
            "pairs_dropped_degenerate": self.skipped_identical,
            "prompt_groups_capped": self.groups_capped,
        }


@dataclass(frozen=True)
class _Row:
    order: tuple[str, str]  # (trace_id, observation_id or "")
    trace_id: str
    observation_id: str | None
    reward: float
    prompt: str | None
    texts: RowTexts
    prompt_messages: list
    final: dict
    tools: str | None
    response_key: str


def _pairable(table: pa.Table | pa.RecordBatch) -> pa.ChunkedArray | pa.Array:
    """Rows that can be in a pair: in train or test, with a reward."""
    mask = pc.and_(pc.is_in(table.column("split"), pa.array(SPLITS)), pc.is_valid(table.column("final_reward")))
    return pc.fill_null(mask, False)


def pairable_rows(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """The rows of a streamed reward cell that pairing can use (:func:`build_pairs` needs them
    together), without ever holding the rest: unlabeled and excluded rows are most of a cell."""
    kept = [batch.filter(_pairable(batch)) for batch in batches]
    return pa.Table.from_batches([batch for batch in kept if batch.num_rows], schema=schema)


def _candidate_rows(table: pa.Table) -> list[tuple[str, _Row]]:
    missing = [c for c in ("trace_id", "split", "final_reward") if c not in table.column_names]
    if missing:
        raise ValueError(f"pairing needs the columns {missing}")
    table = table.filter(_pairable(table))
    present = [c for c in PAIR_INPUT_COLUMNS if c in table.column_names]
    table = table.select(present).combine_chunks()
    trace_ids = table.column("trace_id").to_pylist()
    observation_ids = table.column("observation_id").to_pylist() if "observation_id" in present else [None] * len(trace_ids)
    splits = table.column("split").to_pylist()
    rewards = table.column("final_reward").to_pylist()
    prompts = table.column("prompt").to_pylist() if "prompt" in present else [None] * len(trace_ids)
    messages = table.column("messages").to_pylist() if "messages" in present else [None] * len(trace_ids)
    responses = table.column("response").to_pylist() if "response" in present else [None] * len(trace_ids)
    tools = table.column("tools").to_pylist() if "tools" in present else [None] * len(trace_ids)
    rows = []
    for i, texts in enumerate(iter_row_texts(table)):
        if not texts.dialogue.strip() or not texts.response.strip():
            continue
        prompt_messages, final = split_conversation(messages[i], prompts[i], responses[i])
        if not has_answer(final):
            final = {"role": "assistant", "content": texts.response, "tool_calls": None, "tool_call_id": None, "name": None}
        rows.append(
            (
                splits[i],
                _Row(
                    (trace_ids[i], observation_ids[i] or ""),
                    trace_ids[i],
                    observation_ids[i],
                    round(float(rewards[i]), ROUND_DECIMALS),
                    prompts[i],
                    texts,
                    prompt_messages,
                    final,
                    normalize_tools(tools[i]),
                    response_key(final),
                ),
            )
        )
    return rows


def _prompt_groups(rows: list[tuple[str, _Row]], config: PairConfig) -> dict[tuple[str, str], list[_Row]]:
    """``{(split, group id): rows}``: exact prompt groups merged with near-identical ones."""
    exact: dict[tuple[str, bytes, bytes], list[_Row]] = defaultdict(list)
    for split, row in rows:
        exact[(split, row.texts.system_key, digest(row.texts.dialogue_exact))].append(row)
    ordered = sorted(exact)
    if config.near_duplicates:
        texts = [exact[key][0].texts.dialogue_near for key in ordered]
        leaders = near_duplicate_leaders(texts, [key[:2] for key in ordered], config.near_duplicates)
    else:
        leaders = np.arange(len(ordered))
    groups: dict[tuple[str, str], list[_Row]] = defaultdict(list)
    for key, leader in zip(ordered, leaders.tolist()):
        split, system_key, _ = key
        leader_key = ordered[leader][2]
        groups[(split, digest(system_key.hex() + leader_key.hex()).hex())].extend(exact[key])
    return groups


def _best_pairs(members: list[_Row], config: PairConfig, stats: PairStats) -> list[tuple[_Row, _Row, float]]:
    """Up to ``max_pairs_per_prompt`` valid pairs, largest margin first."""
    ranked = sorted(members, key=lambda r: (-r.reward, r.order))
    n = len(ranked)
    if n < 2:
        return []

    def entry(i: int, j: int):
        margin = round(ranked[i].reward - ranked[j].reward, ROUND_DECIMALS)
        return (-margin, ranked[i].order, ranked[j].order, i, j)

    heap = [entry(0, n - 1)]
    seen = {(0, n - 1)}
    out: list[tuple[_Row, _Row, float]] = []
    examined = 0
    while heap and examined < config.max_candidates_per_prompt:
        negative_margin, _, _, i, j = heapq.heappop(heap)
        margin = -negative_margin
        if margin <= 0 or margin < config.min_margin:
            break  # every remaining candidate has a smaller or equal margin
        examined += 1
        if ranked[i].response_key == ranked[j].response_key:
            stats.skipped_identical += 1
        elif len(out) == config.max_pairs_per_prompt:
            stats.groups_capped += 1
            break
        else:
            out.append((ranked[i], ranked[j], margin))
        for a, b in ((i + 1, j), (i, j - 1)):
            if a < b and (a, b) not in seen:
                seen.add((a, b))
                heapq.heappush(heap, entry(a, b))
    return out


def build_pairs(table: pa.Table | pa.RecordBatch, config: PairConfig | None = None) -> tuple[pa.Table, PairStats]:
    """DPO pairs of a reward cell (see the module docstring) as a ``PAIRS_SCHEMA`` table."""
    config = config or PairConfig()
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    stats = PairStats()
    rows = _candidate_rows(table)
    stats.rows = len(rows)
    groups = _prompt_groups(rows, config)
    stats.prompt_groups = len(groups)
    records = []
    for (split, group_id) in sorted(groups):
        pairs = _best_pairs(groups[(split, group_id)], config, stats)
        if pairs:
            stats.groups_with_pairs += 1
        for chosen, rejected, margin in pairs:
            records.append(
                {
                    "split": split,
                    "prompt_group": group_id,
                    "prompt_messages": chosen.prompt_messages,
                    "prompt": chosen.prompt,
                    "chosen": chosen.texts.response,
                    "rejected": rejected.texts.response,
                    "chosen_message": chosen.final,
                    "rejected_message": rejected.final,
                    "tools": chosen.tools,
                    "chosen_reward": chosen.reward,
                    "rejected_reward": rejected.reward,
                    "margin": margin,
                    "chosen_trace_id": chosen.trace_id,
                    "chosen_observation_id": chosen.observation_id,
                    "rejected_trace_id": rejected.trace_id,
                    "rejected_observation_id": rejected.observation_id,
                }
            )
    stats.pairs = len(records)
    return pa.Table.from_pylist(records, schema=PAIRS_SCHEMA), stats
