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

import pyarrow as pa

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
