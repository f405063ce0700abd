"""The texts a row is compared by: exact-duplicate keys and near-duplicate prompts.

Every row of the normalized schema carries ``messages`` (the conversation up to
and including its final assistant turn), ``prompt`` (the last user turn) and
``response`` (the final assistant message, or its tool calls as JSON). From
them we derive, per row:

- ``system``: the system/developer messages of the prompt side. Compared
  exactly (pairing) or not at all (splits): an application's shared system
  prompt says nothing about two requests being the same question, and a long
  one would make every pair of rows look near-identical.
- ``dialogue``: every other message before the final assistant turn (user
  turns, earlier assistant turns, tool results), newline-joined without role
  labels. This is the "prompt" near-duplicate detection looks at.
- ``dedup_key``: a digest of the whole prompt side (roles included) and the
  response, whitespace-collapsed and case-folded: two rows with the same key
  are the same training example.

Rows without ``messages`` fall back to ``prompt`` / ``response``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..identity import joined_keys

SYSTEM_ROLES = frozenset({"system", "developer"})

_WHITESPACE = re.compile(r"\s+")
# Punctuation and symbols become spaces for near-duplicate comparison, so
# "What's the capital of France?" and "whats the capital of france" match.
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_exact(text: str | None) -> str:
    """NFKC, case-folded, whitespace collapsed: the exact-duplicate form."""
    if not text:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def normalize_near(text: str | None) -> str:
    """:func:`normalize_exact` with punctuation removed: the near-duplicate form."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", folded)).strip()


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def message_text(content: str | None, tool_calls: str | None) -> str:
    """A message's text: its content, else its tool calls (as the normalizer does for responses)."""
    if content is not None and content.strip():
        return content
    return tool_calls or content or ""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class RowTexts:
    """The prompt side of one row, split for comparison and export."""

    prompt_messages: tuple[Message, ...]  # every message before the final assistant turn
    response: str
    system: str  # raw system text ("" when none)
    dialogue: str  # raw dialogue text

    @property
    def system_key(self) -> bytes:
        return digest(normalize_exact(self.system))

    @property
    def dialogue_exact(self) -> str:
        return normalize_exact(self.dialogue)

    @property
    def dialogue_near(self) -> str:
        return normalize_near(self.dialogue)

    @property
    def dedup_key(self) -> bytes:
        """Same key ⇔ same prompt side (roles included) and same response, modulo case/whitespace."""
        parts = [f"{m.role}\x1f{normalize_exact(m.content)}" for m in self.prompt_messages]
        parts.append(f"\x1d{normalize_exact(self.response)}")
        return digest("\x1e".join(parts))


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array | pa.ChunkedArray | None:
    return batch.column(name) if name in batch.schema.names else None


def iter_row_texts(batch: pa.RecordBatch | pa.Table) -> Iterator[RowTexts]:
    """:class:`RowTexts` of each row, reading ``messages`` through Arrow offsets
    (no per-message dicts) and falling back to ``prompt`` / ``response``."""
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks()
        batches = batch.to_batches()
        for part in batches:
            yield from iter_row_texts(part)
        return
    n = batch.num_rows
    prompts = _column(batch, "prompt")
    responses = _column(batch, "response")
    prompt_list = prompts.to_pylist() if prompts is not None else [None] * n
    response_list = responses.to_pylist() if responses is not None else [None] * n
    messages = _column(batch, "messages")
    if messages is None:
        offsets = None
    else:
        offsets = messages.offsets.to_pylist()
        values = messages.values
        roles = values.field("role").to_pylist()
        contents = values.field("content").to_pylist()
        tool_calls = (
            values.field("tool_calls").to_pylist()
            if "tool_calls" in [values.type.field(i).name for i in range(values.type.num_fields)]
            else [None] * len(values)
        )
        valid = messages.is_valid().to_pylist()
    for i in range(n):
        conversation: list[Message] = []
        if offsets is not None and valid[i]:
            for j in range(offsets[i], offsets[i + 1]):
                conversation.append(Message((roles[j] or "").strip().lower(), message_text(contents[j], tool_calls[j])))
        response = response_list[i]
        if conversation and conversation[-1].role == "assistant":
            final = conversation.pop()
            if response is None:
                response = final.content
        if not conversation and prompt_list[i]:
            conversation = [Message("user", prompt_list[i])]
        system = "\n".join(m.content for m in conversation if m.role in SYSTEM_ROLES)
        dialogue = "\n".join(m.content for m in conversation if m.role not in SYSTEM_ROLES)
        yield RowTexts(tuple(conversation), response or "", system, dialogue)


# ------------------------------------------------------------ the same, a batch at a time
#
# What the split planner needs of every row (its dedup key and its near-duplicate
# dialogue) computed with Arrow kernels over the whole batch. Only ASCII rows take
# this path: for ASCII text NFKC is the identity, casefold is lower() and Python's
# \s / \w are the classes below, so the results equal the per-row functions above
# exactly (a test compares them). Rows with any non-ASCII text keep the per-row path.

# Runs that change: whitespace other than one lone space (every lone space would be a
# match of "\s+", and RE2's cost is per match: 10× slower on prose).
_WHITESPACE_TO_COLLAPSE = "[ ]*[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f][\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]*|[ ]{2,}"
# For the near form every run of characters that are neither letters nor digits (punctuation,
# "_", controls, whitespace) becomes one space; again only the runs that are not a lone space.
_NON_ALNUM_TO_SPACE = "[ ]*[^0-9A-Za-z ][^0-9A-Za-z]*|[ ]{2,}"


def _exact_ascii(text: pa.Array) -> pa.Array:
    collapsed = pc.replace_substring_regex(pc.ascii_lower(text), pattern=_WHITESPACE_TO_COLLAPSE, replacement=" ")
    return pc.utf8_trim(collapsed, characters=" ")


def _near_ascii(text: pa.Array) -> pa.Array:
    spaced = pc.replace_substring_regex(pc.ascii_lower(text), pattern=_NON_ALNUM_TO_SPACE, replacement=" ")
    return pc.utf8_trim(spaced, characters=" ")


def _truthy(text: pa.Array) -> pa.Array:
    # byte length, read from the offsets (utf8_length counts code points: a pass over every byte)
    return pc.fill_null(pc.greater(pc.binary_length(text), 0), False)


def _join_per_row(values: pa.Array, parents: np.ndarray, n: int, separator: str) -> pa.Array:
    """``separator.join`` of ``values`` grouped by row (``parents`` sorted); "" for rows without values."""
    counts = np.bincount(parents, minlength=n) if len(parents) else np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), values if len(values) else pa.array([], pa.string()))
    return pc.fill_null(pc.binary_join(lists, separator), "")


def _non_ascii_rows(n: int, row_arrays: list[pa.Array], parents: np.ndarray, value_arrays: list[pa.Array]) -> np.ndarray:
    bad = np.zeros(n, bool)
    for array in row_arrays:
        bad |= ~np.asarray(pc.fill_null(pc.string_is_ascii(array), True), bool)
    for array in value_arrays:
        flags = ~np.asarray(pc.fill_null(pc.string_is_ascii(array), True), bool)
        if flags.any():
            bad[parents[flags]] = True
    return bad


def split_keys(batch: pa.RecordBatch | pa.Table) -> tuple[np.ndarray, pa.Array]:
    """``(dedup_key, dialogue_near)`` of each row: :attr:`RowTexts.dedup_key` (``S16``) and
    :attr:`RowTexts.dialogue_near` (a string array) of :func:`iter_row_texts`, vectorized."""
    if isinstance(batch, pa.Table):
        parts = [split_keys(part) for part in batch.combine_chunks().to_batches()]
        if not parts:
            return np.zeros(0, "S16"), pa.array([], pa.string())
        return np.concatenate([keys for keys, _ in parts]), pa.concat_arrays([near for _, near in parts])
    n = batch.num_rows
    string = pa.string()
    prompts = _column(batch, "prompt")
    responses = _column(batch, "response")
    prompts = prompts.cast(string) if prompts is not None else pa.nulls(n, string)
    responses = responses.cast(string) if responses is not None else pa.nulls(n, string)
    messages = _column(batch, "messages")
    if messages is not None and messages.null_count:
        messages = pc.if_else(messages.is_valid(), messages, pa.scalar([], messages.type))
    if messages is not None:
        values = messages.flatten()
        parents = np.asarray(pc.list_parent_indices(messages), np.int64)
        lengths = np.asarray(pc.list_value_length(messages).fill_null(0), np.int64)
        names = [values.type.field(i).name for i in range(values.type.num_fields)]
        roles = values.field("role").cast(string)
        contents = values.field("content").cast(string)
        tool_calls = values.field("tool_calls").cast(string) if "tool_calls" in names else pa.nulls(len(values), string)
    else:
        parents = np.zeros(0, np.int64)
        lengths = np.zeros(n, np.int64)
        roles = contents = tool_calls = pa.array([], string)
    slow = _non_ascii_rows(n, [prompts, responses], parents, [roles, contents, tool_calls])

    roles = pc.ascii_lower(pc.utf8_trim(pc.fill_null(roles, ""), characters=" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"))
    # message_text: the content, unless blank; then the tool calls, else whatever the content was
    content_ok = pc.and_(_truthy(contents), pc.invert(pc.fill_null(pc.utf8_is_space(contents), False)))
    texts = pc.if_else(
        content_ok, contents, pc.if_else(_truthy(tool_calls), tool_calls, pc.if_else(_truthy(contents), contents, ""))
    )
    # the final assistant turn is the response side
    ends = np.cumsum(lengths) - 1
    last = np.zeros(len(parents), bool)
    has_messages = lengths > 0
    last[ends[has_messages]] = True
    final = last & (np.asarray(roles.to_numpy(zero_copy_only=False)) == "assistant") if len(parents) else last
    popped = np.zeros(n, bool)
    popped[parents[final]] = True
    final_text = pa.nulls(n, string)
    if final.any():
        positions = np.full(n, -1, np.int64)
        positions[parents[final]] = np.flatnonzero(final)
        final_text = texts.take(pa.array(np.where(positions >= 0, positions, 0))).to_numpy(zero_copy_only=False)
        final_text = pc.if_else(pa.array(popped), pa.array(final_text, string), pa.nulls(n, string))
    response = pc.fill_null(pc.coalesce(responses, final_text), "")

    kept = ~final
    kept_parents = parents[kept]
    kept_roles = roles.filter(pa.array(kept))
    kept_texts = texts.filter(pa.array(kept))
    # a row with no message left and a prompt is one user turn
    conversation_size = np.bincount(kept_parents, minlength=n) if len(kept_parents) else np.zeros(n, np.int64)
    fallback = (conversation_size == 0) & np.asarray(_truthy(prompts), bool)
    system = np.isin(np.asarray(kept_roles.to_numpy(zero_copy_only=False), object), list(SYSTEM_ROLES)) if len(kept_parents) else np.zeros(0, bool)

    dialogue = _join_per_row(kept_texts.filter(pa.array(~system)), kept_parents[~system], n, "\n")
    dialogue = pc.if_else(pa.array(fallback), prompts, dialogue)

    message_keys = pc.binary_join_element_wise(kept_roles, _exact_ascii(kept_texts), "\x1f")
    joined = _join_per_row(message_keys, kept_parents, n, "\x1e")
    if fallback.any():
        # normalized only where used: prompts are as long as the texts above
        fallback_at = np.flatnonzero(fallback)
        fallback_keys = pc.binary_join_element_wise("user", _exact_ascii(prompts.take(pa.array(fallback_at))), "\x1f")
        position = np.full(n, -1, np.int64)
        position[fallback_at] = np.arange(len(fallback_at))
        joined = pc.if_else(pa.array(fallback), fallback_keys.take(pa.array(position, mask=~fallback)), joined)
    has_turns = pa.array((conversation_size > 0) | fallback)
    tail = pc.binary_join_element_wise("\x1d", _exact_ascii(response), "")
    whole = pc.if_else(has_turns, pc.binary_join_element_wise(joined, tail, "\x1e"), tail)

    dedup_keys = joined_keys([whole])  # digest() of each text, from the bytes Arrow holds
    near = _near_ascii(dialogue)
    if slow.any():
        dedup_keys = dedup_keys.copy()
        nears = near.to_pylist()
        for i in np.flatnonzero(slow):
            row = next(iter_row_texts(batch.slice(int(i), 1)))
            dedup_keys[i] = row.dedup_key
            nears[i] = row.dialogue_near
        near = pa.array(nears, pa.string())
    return dedup_keys, near
