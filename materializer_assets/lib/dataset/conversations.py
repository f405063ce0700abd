"""TRL conversations of a whole batch with Arrow kernels, for the exports.

The per-row functions (:func:`.chat.split_conversation`, :func:`.chat.trl_messages`,
:func:`.text.iter_row_texts`) cost ~40 µs a row in Python; most rows are plain chats
(system / developer / user / assistant turns, no tool calls), for which the same results
follow from a few column operations. :func:`conversations` tells which rows are plain
(``fast``) and which of them an export keeps (``usable``), reading the texts without
copying them; :meth:`Conversations.prompts`, :meth:`~Conversations.finals` and
:meth:`~Conversations.responses` then copy each text an export writes once. The exports
build the other rows row by row, as before. A test compares both paths on random rows,
tool calls, Unicode blanks and missing columns included.

"Blank" is Python's ``str.strip()`` (every character ``str.isspace`` accepts), so the
skip rules (no prompt, no response) and the answer fallback match the per-row code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .chat import TOOL_CALL_TYPE, TRL_MESSAGE_TYPE
from .text import SYSTEM_ROLES

# Every character Python's str.strip() removes (none lies above U+3000).
PYTHON_WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())
# A string is not blank when it holds a character outside that set: a search that stops at
# the first such character, instead of trimming (which copies every string).
_NOT_WHITESPACE = "[^" + "".join(f"\\x{{{ord(ch):x}}}" for ch in PYTHON_WHITESPACE) + "]"
_PLAIN_ROLES = pa.array(["system", "developer", "user", "assistant"])
_SYSTEM_ROLES = pa.array(sorted(SYSTEM_ROLES))
_STRING = pa.string()
_INT64 = pa.int64()


def not_blank(strings: pa.Array) -> np.ndarray:
    """``bool(s.strip())`` per string (null: False)."""
    return np.asarray(pc.fill_null(pc.match_substring_regex(strings, pattern=_NOT_WHITESPACE), False), bool)


def _truthy(strings: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.greater(pc.utf8_length(strings), 0), False), bool)


def _array(table: pa.Table, name: str, kind: pa.DataType | None = _STRING) -> pa.Array | None:
    if name not in table.column_names:
        return None
    column = table.column(name)
    array = pa.concat_arrays(column.chunks) if column.num_chunks != 1 else column.chunk(0)
    return array.cast(kind) if kind is not None else array


def _field(values: pa.StructArray, name: str) -> pa.Array:
    present = [values.type.field(i).name for i in range(values.type.num_fields)]
    return values.field(name).cast(_STRING) if name in present else pa.nulls(len(values), _STRING)


def _messages(role: pa.Array, content: pa.Array, name: pa.Array) -> pa.StructArray:
    n = len(role)
    return pa.StructArray.from_arrays(
        [role, content, pa.nulls(n, pa.list_(TOOL_CALL_TYPE)), pa.nulls(n, _STRING), name],
        fields=list(TRL_MESSAGE_TYPE),
    )


def _take(array: pa.Array, positions: np.ndarray) -> pa.Array:
    return array.take(pa.array(positions, _INT64))


@dataclass(frozen=True)
class Conversations:
    """Per row of a batch; what the exports need of plain chats (``fast`` rows)."""

    fast: np.ndarray  # bool: a plain chat
    has_prompt: np.ndarray  # bool: RowTexts.dialogue is not blank
    has_response: np.ndarray  # bool: RowTexts.response is not blank
    prompt_given: np.ndarray  # bool: the prompt column holds a non-empty string
    # message values (the rows' messages, flattened) and what is known of each
    _parents: np.ndarray
    _kept: np.ndarray  # not the final assistant turn (which is the answer)
    _roles: pa.Array
    _contents: pa.Array
    _names: pa.Array
    _content_not_blank: np.ndarray
    # rows
    _fallback: np.ndarray  # no message before the answer, but a prompt: one user turn
    _answer_at: np.ndarray  # value index of the popped answer, -1 when none
    _last_user_at: np.ndarray  # value index of the last user turn before the answer, -1 when none
    _prompt: pa.Array
    _response: pa.Array
    _response_not_blank: np.ndarray

    @property
    def usable(self) -> np.ndarray:
        return self.fast & self.has_prompt & self.has_response

    def skip_counts(self, among: np.ndarray) -> dict[str, int]:
        """What the per-row path counts in ``skipped`` for the fast rows ``among`` (a mask)."""
        fast = self.fast & among
        return {
            "no_prompt": int(np.count_nonzero(fast & ~self.has_prompt)),
            "no_response": int(np.count_nonzero(fast & self.has_prompt & ~self.has_response)),
        }

    def prompts(self, rows: np.ndarray) -> pa.ListArray:
        """The prompt side of ``rows`` (ascending) as TRL messages: ``split_conversation``'s first part."""
        n = len(self.fast)
        rank = np.full(n, -1, np.int64)
        rank[rows] = np.arange(len(rows))
        values = np.flatnonzero(self._kept & (rank[self._parents] >= 0))
        owner = rank[self._parents[values]]
        roles = _take(self._roles, values)
        assistant = pc.equal(roles, "assistant")
        contents = _take(self._contents, values)
        if contents.null_count:  # chat.trl_messages: "" for a missing content, except an assistant's
            contents = pc.if_else(assistant, contents, pc.fill_null(contents, ""))
        names = _take(self._names, values)
        if names.null_count != len(names):  # an assistant turn carries no name
            names = pc.if_else(assistant, pa.nulls(len(names), _STRING), names)
        messages = _messages(roles, contents, names)
        fallback = rows[self._fallback[rows]]
        if len(fallback):
            k = len(fallback)
            users = _messages(pa.array(["user"] * k, _STRING), _take(self._prompt, fallback), pa.nulls(k, _STRING))
            owner = np.concatenate([owner, rank[fallback]])
            messages = pa.concat_arrays([messages, users]).take(pa.array(np.argsort(owner, kind="stable"), _INT64))
        offsets = np.zeros(len(rows) + 1, np.int32)
        np.cumsum(np.bincount(owner, minlength=len(rows)), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), messages, type=pa.list_(TRL_MESSAGE_TYPE))

    def has_user_turn(self) -> np.ndarray:
        return self._last_user_at >= 0

    def last_user_turns(self, rows: np.ndarray) -> pa.Array:
        """The text of the last user turn before the answer of ``rows`` (null for a row without one)."""
        at = self._last_user_at[rows]
        if not len(self._contents):
            return pa.nulls(len(rows), _STRING)
        return pc.if_else(pa.array(at >= 0), pc.fill_null(_take(self._contents, np.maximum(at, 0)), ""), pa.nulls(len(rows), _STRING))

    def responses(self, rows: np.ndarray) -> pa.Array:
        """``RowTexts.response`` of ``rows``: the response column, else the answer turn's text."""
        response = _take(self._response, rows)
        if not response.null_count:
            return response
        answer_at = self._answer_at[rows]
        popped = pa.array(answer_at >= 0)
        answer = pc.fill_null(_take(self._contents, np.maximum(answer_at, 0)), "") if len(self._contents) else pa.nulls(len(rows), _STRING)
        return pc.coalesce(response, pc.if_else(popped, answer, pa.nulls(len(rows), _STRING)), "")

    def finals(self, rows: np.ndarray) -> pa.StructArray:
        """The final assistant message of ``rows``: the answer turn, else the response column,
        and the row's response text where that says nothing (``has_answer`` false)."""
        answer_at = self._answer_at[rows]
        popped = answer_at >= 0
        response = _take(self._response, rows)
        answered_turn = popped & self._content_not_blank[np.maximum(answer_at, 0)] if len(self._contents) else np.zeros(len(rows), bool)
        answered_response = ~popped & self._response_not_blank[rows]
        answer = _take(self._contents, np.maximum(answer_at, 0)) if len(self._contents) else pa.nulls(len(rows), _STRING)
        content = pc.if_else(
            pa.array(answered_turn), answer, pc.if_else(pa.array(answered_response), response, self.responses(rows))
        )
        k = len(rows)
        return _messages(pa.array(["assistant"] * k, _STRING), content, pa.nulls(k, _STRING))


def conversations(table: pa.Table) -> Conversations:
    n = table.num_rows
    prompts = _array(table, "prompt")
    prompts = prompts if prompts is not None else pa.nulls(n, _STRING)
    responses = _array(table, "response")
    responses = responses if responses is not None else pa.nulls(n, _STRING)
    messages = _array(table, "messages", None) if n else None
    if messages is not None:
        if messages.null_count:  # a null list may still span values: read it as empty
            messages = pc.if_else(messages.is_valid(), messages, pa.scalar([], messages.type))
        values = messages.flatten()
        parents = np.asarray(pc.list_parent_indices(messages), np.int64)
    else:
        values = pa.array([], pa.struct([pa.field("role", _STRING)]))
        parents = np.zeros(0, np.int64)
    m = len(values)
    roles, contents = _field(values, "role"), _field(values, "content")
    names, calls = _field(values, "name"), _field(values, "tool_calls")

    # A plain message: one of the four roles exactly as written, and no tool calls.
    plain = np.asarray(pc.fill_null(pc.is_in(roles, value_set=_PLAIN_ROLES), False), bool)
    plain &= np.asarray(pc.fill_null(pc.equal(pc.utf8_length(calls), 0), True), bool)
    fast = np.ones(n, bool)
    fast[parents[~plain]] = False

    is_assistant = np.asarray(pc.fill_null(pc.equal(roles, "assistant"), False), bool)
    is_system = np.asarray(pc.fill_null(pc.is_in(roles, value_set=_SYSTEM_ROLES), False), bool)
    last = np.zeros(m, bool)
    if m:
        last[np.flatnonzero(np.append(parents[1:] != parents[:-1], True))] = True
    popped = last & is_assistant
    kept = ~popped
    kept_per_row = np.bincount(parents[kept], minlength=n) if m else np.zeros(n, np.int64)
    prompt_given = _truthy(prompts)
    fallback = (kept_per_row == 0) & prompt_given
    answer_at = np.full(n, -1, np.int64)
    answer_at[parents[popped]] = np.flatnonzero(popped)

    last_user_at = np.full(n, -1, np.int64)
    users = np.flatnonzero(kept & np.asarray(pc.fill_null(pc.equal(roles, "user"), False), bool))
    if len(users):
        owners = parents[users]
        final_of_row = np.append(owners[1:] != owners[:-1], True)
        last_user_at[owners[final_of_row]] = users[final_of_row]

    content_not_blank = not_blank(contents) if m else np.zeros(0, bool)
    response_not_blank = not_blank(responses)
    # RowTexts.dialogue: the non-system texts before the answer, or the fallback prompt
    has_prompt = np.zeros(n, bool)
    has_prompt[parents[kept & ~is_system & content_not_blank]] = True
    has_prompt |= fallback & not_blank(prompts)
    # RowTexts.response: the response column when there is one, else the answer turn's text
    has_response = np.where(
        np.asarray(responses.is_valid(), bool),
        response_not_blank,
        (answer_at >= 0) & (content_not_blank[np.maximum(answer_at, 0)] if m else False),
    )
    return Conversations(
        fast, has_prompt, has_response, prompt_given, parents, kept, roles, contents, names, content_not_blank,
        fallback, answer_at, last_user_at, prompts, responses, response_not_blank,
    )
