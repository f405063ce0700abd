"""Turn source records into rows of the normalized trace schema.

Every reader ends here, so the rules live in one place: how a chat message is
normalized, how a multi-turn conversation becomes training examples, how the
content hash (the dedup and cache key) is computed, and which records are
rejected, with a named reason.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .consent import consent_from_record
from .schema import MESSAGE_TYPE, NORMALIZED_SCHEMA
from .slugs import model_slug

# Rejection reasons (the keys of the counts in asset metadata).
REJECT_MALFORMED_JSON = "malformed_json"
REJECT_INVALID_UTF8 = "invalid_utf8"
REJECT_NOT_AN_OBJECT = "not_an_object"
REJECT_MISSING_ID = "missing_id"
REJECT_MISSING_TIMESTAMP = "missing_timestamp"
REJECT_BAD_TIMESTAMP = "bad_timestamp"
REJECT_NO_MESSAGES = "no_messages"
REJECT_BAD_MESSAGES = "bad_messages"
REJECT_UNREADABLE_FILE = "unreadable_file"

# Where a content hash's parts are separated: control characters that JSON
# text and chat content practically never contain.
_FIELD_SEP = "\x1f"
_MESSAGE_SEP = "\x1e"
CONTENT_HASH_HEX_CHARS = 32


@dataclass
class ReadOptions:
    """Options every reader honours."""

    convert_to_single_turn: bool = True


@dataclass
class RejectionLog:
    """Records a reader refused, counted by reason, with a few examples.

    ``counts`` holds records known to belong to the cell being read;
    ``unattributed`` holds records too broken to tell which cell they belong
    to (e.g. a line that is not JSON), reported with every cell read from the
    same input so they are never silently lost.

    ``examples`` (reason and ``file:line`` or record id) end up in asset
    metadata, i.e. in Dagster's event log, which cannot be erased: they never
    carry the ``detail`` text, which may quote the record (a prompt, a user id).
    """

    counts: Counter = field(default_factory=Counter)
    unattributed: Counter = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)
    max_examples: int = 20

    def reject(self, reason: str, location: str, detail: str = "", attributed: bool = True) -> None:
        """Count a refused record. ``detail`` (e.g. a parser message) is accepted for
        callers' convenience but not kept: it may quote the record's content."""
        (self.counts if attributed else self.unattributed)[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append({"reason": reason, "location": location})

    def merge(self, other: "RejectionLog") -> None:
        self.counts.update(other.counts)
        self.unattributed.update(other.unattributed)
        room = self.max_examples - len(self.examples)
        self.examples.extend(other.examples[: max(room, 0)])

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + sum(self.unattributed.values())


class RecordRejected(ValueError):
    """A record that cannot become a training example; ``reason`` names why."""

    def __init__(self, reason: str, detail: str = "", attributed: bool = True) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.attributed = attributed


# ---------------------------------------------------------------- values


def parse_timestamp(value: Any) -> datetime:
    """A timezone-aware UTC datetime from ISO text, epoch seconds/ms or datetime."""
    if value is None or value == "":
        raise RecordRejected(REJECT_MISSING_TIMESTAMP, attributed=False)
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)  # ms vs s
        try:
            parsed = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise RecordRejected(REJECT_BAD_TIMESTAMP, str(value), attributed=False) from exc
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        if " " in text and "T" not in text:
            text = text.replace(" ", "T", 1)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise RecordRejected(REJECT_BAD_TIMESTAMP, value, attributed=False) from exc
    else:
        raise RecordRejected(REJECT_BAD_TIMESTAMP, repr(value)[:80], attributed=False)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def utc_day(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).date().isoformat()


def as_text(value: Any) -> str | None:
    """Text for a field that should be text; structured values become JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def as_float(value: Any) -> float | None:
    """A finite number, or None for anything else (booleans, NaN, infinities, text that is no number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number


def as_int(value: Any) -> int | None:
    number = as_float(value)
    if number is None or abs(number) > 2**62:  # absurd
        return None
    return int(number)


def as_mapping(value: Any) -> dict[str, Any]:
    """A metadata dict from a dict or a JSON object string; anything else is {}."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def decoded(value: Any) -> Any:
    """Decode JSON text held in a text field: JSON containers and string literals.

    Langfuse v4 returns input/output as raw JSON text, and CSV or ClickHouse
    string columns hold JSON; anything that is not valid JSON stays as it is.
    """
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{") or (len(stripped) > 1 and stripped[0] == stripped[-1] == '"'):
            try:
                return json.loads(stripped)
            except ValueError:
                return value
    return value


def as_string_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except ValueError:
                return [value]
            return as_string_list(parsed)
        return [value] if stripped else []
    if isinstance(value, Mapping):
        text = value.get("page_content") or value.get("content") or value.get("text")
        return [as_text(text) or ""] if text is not None else [as_text(value) or ""]
    if isinstance(value, Iterable):
        out: list[str] = []
        for item in value:
            out.extend(as_string_list(item) if isinstance(item, (Mapping, list, tuple)) else [as_text(item) or ""])
        return [item for item in out if item != ""]
    return [str(value)]


def context_texts(output: Any) -> list[str]:
    """Documents a retriever returned: a list, ``{documents|contexts|results|docs: [...]}`` or text."""
    output = decoded(output)
    if isinstance(output, Mapping):
        for key in ("documents", "contexts", "results", "docs"):
            if isinstance(output.get(key), list):
                return as_string_list(output[key])
    return as_string_list(output)


# ---------------------------------------------------------------- messages


def _content_text(content: Any) -> str | None:
    """OpenAI content: a string, or a list of parts of which text parts are kept."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                if part.get("type") in (None, "text", "input_text", "output_text") and "text" in part:
                    texts.append(as_text(part.get("text")) or "")
                else:
                    texts.append(f"[{part.get('type', 'part')}]")
        return "\n".join(texts)
    return as_text(content)


def normalize_message(raw: Any) -> dict[str, Any]:
    """One chat message as ``{role, content, tool_calls, name}``."""
    if isinstance(raw, str):
        return {"role": "user", "content": raw, "tool_calls": None, "name": None}
    if not isinstance(raw, Mapping):
        raise RecordRejected(REJECT_BAD_MESSAGES, f"message is {type(raw).__name__}")
    role = raw.get("role")
    if not isinstance(role, str) or not role.strip():
        raise RecordRejected(REJECT_BAD_MESSAGES, "message without a role")
    tool_calls = raw.get("tool_calls")
    if tool_calls is None and raw.get("function_call") is not None:
        tool_calls = [{"type": "function", "function": raw.get("function_call")}]
    name = raw.get("name")
    if role == "tool" and name is None:
        name = raw.get("tool_call_id")
    return {
        "role": role.strip().lower(),
        "content": _content_text(raw.get("content")),
        "tool_calls": as_text(tool_calls) if tool_calls else None,
        "name": as_text(name),
    }


def normalize_messages(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        stripped = raw.strip()
        if stripped.startswith("["):
            try:
                raw = json.loads(stripped)
            except ValueError:
                pass
        elif stripped.startswith("{"):
            try:
                raw = json.loads(stripped)
            except ValueError:
                pass
    if isinstance(raw, Mapping):
        # Langfuse sometimes wraps the chat: {"messages": [...]} or one message.
        if isinstance(raw.get("messages"), list):
            raw = raw["messages"]
        else:
            raw = [raw]
    if isinstance(raw, str):
        return [normalize_message(raw)] if raw else []
    if not isinstance(raw, list):
        if raw is None:
            return []
        raise RecordRejected(REJECT_BAD_MESSAGES, f"messages is {type(raw).__name__}")
    return [normalize_message(message) for message in raw]


def assistant_output_message(output: Any) -> dict[str, Any] | None:
    """The assistant message a generation produced, from its ``output`` field.

    Accepts a string, an OpenAI message, a completion ``choices`` object, or
    the Langfuse-observation list of tool calls ``[{toolCallId, toolName, input}]``.
    """
    if output is None:
        return None
    if isinstance(output, str):
        stripped = output.strip()
        if stripped.startswith(("{", "[")):
            try:
                return assistant_output_message(json.loads(stripped))
            except ValueError:
                pass
        return {"role": "assistant", "content": output, "tool_calls": None, "name": None}
    if isinstance(output, Mapping):
        if isinstance(output.get("choices"), list) and output["choices"]:
            choice = output["choices"][0]
            return assistant_output_message(choice.get("message", choice) if isinstance(choice, Mapping) else choice)
        if "role" in output or "content" in output or "tool_calls" in output:
            message = normalize_message({"role": output.get("role") or "assistant", **output})
            message["role"] = "assistant"
            return message
        if "text" in output:
            return {"role": "assistant", "content": as_text(output["text"]), "tool_calls": None, "name": None}
        return {"role": "assistant", "content": as_text(output), "tool_calls": None, "name": None}
    if isinstance(output, list):
        if output and all(isinstance(item, Mapping) and ("toolName" in item or "toolCallId" in item) for item in output):
            calls = [
                {
                    "id": item.get("toolCallId"),
                    "type": "function",
                    "function": {"name": item.get("toolName"), "arguments": as_text(item.get("input")) or "{}"},
                }
                for item in output
            ]
            return {"role": "assistant", "content": None, "tool_calls": as_text(calls), "name": None}
        if output and all(isinstance(item, Mapping) and "role" in item for item in output):
            return assistant_output_message(output[-1])
        return {"role": "assistant", "content": as_text(output), "tool_calls": None, "name": None}
    return {"role": "assistant", "content": as_text(output), "tool_calls": None, "name": None}


def message_response(message: Mapping[str, Any]) -> str | None:
    """The training target of an assistant message: its text, else its tool calls."""
    content = message.get("content")
    if content is not None and content.strip():
        return content
    return message.get("tool_calls") or content


def expand_turns(messages: Sequence[Mapping[str, Any]], convert_to_single_turn: bool) -> list[tuple[int, list]]:
    """Training examples of one conversation: ``(assistant_turn_index, messages)``.

    Single-turn mode makes every assistant turn an example carrying the
    conversation before it; otherwise the conversation up to its final
    assistant turn is one example. A conversation with no assistant turn
    yields one example with no response (kept raw, dropped later by name).
    """
    assistant_positions = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not assistant_positions:
        return [(0, list(messages))]
    if not convert_to_single_turn:
        last = assistant_positions[-1]
        return [(len(assistant_positions) - 1, list(messages[: last + 1]))]
    return [(turn, list(messages[: pos + 1])) for turn, pos in enumerate(assistant_positions)]


def content_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """Hash of the conversation including its final response.

    The canonical text is ``role US content US tool_calls RS`` per message
    (US = 0x1F, RS = 0x1E, nulls as empty strings), SHA-256, first 32 hex
    characters. The Postgres reader computes the same expression in SQL.
    """
    digest = hashlib.sha256()
    for message in messages:
        digest.update(
            (
                (message.get("role") or "")
                + _FIELD_SEP
                + (message.get("content") or "")
                + _FIELD_SEP
                + (message.get("tool_calls") or "")
                + _MESSAGE_SEP
            ).encode("utf-8", "surrogatepass")
        )
    return digest.hexdigest()[:CONTENT_HASH_HEX_CHARS]


def last_user_prompt(messages: Sequence[Mapping[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content")
    return None


# ---------------------------------------------------------------- examples


@dataclass(frozen=True)
class SourceRecord:
    """One source record as a reader found it, and where it came from: what
    :func:`build_examples` normalizes. Values are taken as the source gave them
    (text, numbers, JSON text, lists or mappings); ``build_examples`` parses them.

    ``messages`` is the conversation (possibly including assistant turns);
    ``output``, if given, is the assistant reply that follows it (a Langfuse
    generation's output). ``metadata`` may carry ``feedback_score``, ``contexts``
    and consent signals; ``explicit_consent`` is the source's own consent field.
    """

    trace_id: Any
    observation_id: Any
    timestamp: Any
    model: Any
    messages: Any
    source: str
    extracted_at: datetime
    options: ReadOptions
    output: Any = None
    user_id: Any = None
    session_id: Any = None
    environment: Any = None
    contexts: Any = None
    latency_ms: Any = None
    input_tokens: Any = None
    output_tokens: Any = None
    total_tokens: Any = None
    cost_usd: Any = None
    tags: Any = None
    metadata: Any = None
    explicit_consent: Any = None
    feedback_score: Any = None
    tools: Any = None


def build_examples(record: SourceRecord) -> list[dict[str, Any]]:
    """Normalized rows for one source record (several in single-turn mode); what its
    fields mean: :class:`SourceRecord`. Raises :class:`RecordRejected` with a reason.
    """
    r = record
    trace_id, metadata = r.trace_id, r.metadata
    if trace_id is None or str(trace_id).strip() == "":
        raise RecordRejected(REJECT_MISSING_ID, attributed=False)
    ts = parse_timestamp(r.timestamp)
    conversation = normalize_messages(r.messages)
    reply = assistant_output_message(r.output)
    if reply is not None:
        conversation.append(reply)
    if not conversation:
        raise RecordRejected(REJECT_NO_MESSAGES, str(trace_id))

    metadata_map = as_mapping(metadata)
    tag_list = as_string_list(r.tags)
    consent, consent_source = consent_from_record(r.explicit_consent, tag_list, metadata_map)
    feedback_score = r.feedback_score if r.feedback_score is not None else metadata_map.get("feedback_score")
    contexts = r.contexts
    if contexts is None:
        contexts = metadata_map.get("contexts") or metadata_map.get("retrieved_contexts")
    model_name = as_text(r.model)
    model_name = model_name if model_name and model_name.strip() else None
    metadata_text = (
        json.dumps(metadata_map, ensure_ascii=False, sort_keys=True, default=str)
        if metadata_map
        else (metadata if isinstance(metadata, str) and metadata.strip() else None)
    )
    base = {
        "trace_id": str(trace_id),
        "timestamp": ts,
        "date": utc_day(ts),
        "model": model_name,
        "model_slug": model_slug(model_name),
        "user_id": as_text(r.user_id),
        "session_id": as_text(r.session_id),
        "environment": as_text(r.environment),
        "contexts": as_string_list(contexts),
        "latency_ms": as_int(r.latency_ms),
        "input_tokens": as_int(r.input_tokens),
        "output_tokens": as_int(r.output_tokens),
        "total_tokens": as_int(r.total_tokens),
        "cost_usd": as_float(r.cost_usd),
        "tags": tag_list,
        "metadata": metadata_text,
        "consent": consent,
        "consent_source": consent_source,
        "source": r.source,
        "extracted_at": r.extracted_at,
        "feedback_score": as_float(feedback_score),
        "tools": as_text(r.tools) if r.tools else None,
    }
    if base["total_tokens"] is None and base["input_tokens"] is not None and base["output_tokens"] is not None:
        base["total_tokens"] = base["input_tokens"] + base["output_tokens"]

    turns = expand_turns(conversation, r.options.convert_to_single_turn)
    obs = as_text(r.observation_id)
    rows = []
    for turn_index, turn_messages in turns:
        final = turn_messages[-1]
        response = message_response(final) if final.get("role") == "assistant" else None
        row = dict(base)
        row["observation_id"] = obs if len(turns) == 1 else f"{obs or ''}#turn-{turn_index}"
        row["messages"] = turn_messages
        row["prompt"] = last_user_prompt(turn_messages)
        row["response"] = response
        row["content_hash"] = content_hash(turn_messages)
        rows.append(row)
    return rows


def build_guarded(
    fields: Callable[[], Mapping[str, Any]],
    *,
    source: str,
    extracted_at: datetime,
    options: ReadOptions,
    log: RejectionLog,
    location: str,
) -> list[dict[str, Any]]:
    """:func:`build_examples` of one record, whose rejection costs that record only: logged at
    ``location`` in ``log`` (no rows returned). ``fields`` builds the record's fields inside
    the guard, so a record of a shape nobody foresaw is rejected too, never the cell."""
    try:
        return build_examples(SourceRecord(**fields(), source=source, extracted_at=extracted_at, options=options))
    except RecordRejected as exc:
        log.reject(exc.reason, location, exc.detail)
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
        log.reject(REJECT_BAD_MESSAGES, location, f"{type(exc).__name__}: {exc}")
    return []


def rows_to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=NORMALIZED_SCHEMA)


def batched_rows(rows: Iterable[dict[str, Any]], batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """Group rows into record batches of at most ``batch_rows`` rows."""
    pending: list[dict[str, Any]] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= batch_rows:
            yield rows_to_batch(pending)
            pending = []
    if pending:
        yield rows_to_batch(pending)


def batched_located_rows(
    located_rows: Iterable[tuple[str, dict[str, Any]]], log: RejectionLog, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows from ``(location, row)`` pairs.

    If Arrow refuses a batch (an unpaired surrogate that slipped in through a
    nested JSON string, say), its rows are converted one by one and only the
    offending ones are rejected in ``log`` at their location, so one record
    never stops the others.
    """
    pending: list[tuple[str, dict[str, Any]]] = []
    for item in located_rows:
        pending.append(item)
        if len(pending) >= batch_rows:
            yield from _convert_or_reject(pending, log)
            pending = []
    if pending:
        yield from _convert_or_reject(pending, log)


def _convert_or_reject(pending: list[tuple[str, dict[str, Any]]], log: RejectionLog) -> list[pa.RecordBatch]:
    try:
        return [rows_to_batch([row for _, row in pending])]
    except (UnicodeError, pa.ArrowException):
        pass
    kept = []
    for location, row in pending:
        try:
            rows_to_batch([row])
        except (UnicodeError, pa.ArrowException) as exc:
            reason = REJECT_INVALID_UTF8 if isinstance(exc, UnicodeError) else REJECT_BAD_MESSAGES
            log.reject(reason, location, str(exc))
            continue
        kept.append(row)
    return [rows_to_batch(kept)] if kept else []


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    from datetime import timedelta

    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


# ---------------------------------------------------------------- derived messages


def messages_array(prompt: pa.Array, response: pa.Array) -> pa.Array:
    """``[user(prompt), assistant(response)]`` per row; no assistant where response is null."""
    rows = len(prompt)
    has_response = response.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(1 + has_response.astype(np.int32), out=offsets[1:])
    # Slots index into concat(prompt, response): row i's user slot is i, its
    # assistant slot rows + i; assistant slots of rows without a response go.
    row_numbers = np.arange(rows, dtype=np.int64)
    slots = np.empty(2 * rows, dtype=np.int64)
    slots[0::2], slots[1::2] = row_numbers, row_numbers + rows
    if not has_response.all():
        keep = np.ones(2 * rows, dtype=bool)
        keep[1::2] = has_response
        slots = slots[keep]
    contents = pa.concat_arrays([prompt.cast(pa.string()), response.cast(pa.string())]).take(slots)
    roles = pa.array(["user", "assistant"], pa.string()).take((slots >= rows).astype(np.int8))
    no_text = pa.nulls(len(slots), pa.string())
    values = pa.StructArray.from_arrays([roles, contents, no_text, no_text], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=pa.list_(MESSAGE_TYPE))


# Schema metadata of a batch whose reader built every ``messages`` with messages_array
# (the Postgres reader): compact_messages then needs no comparison.
MESSAGES_DERIVED = {b"materializer.messages": b"messages_array(prompt, response)"}


def _derivable_rows(batch: pa.RecordBatch) -> np.ndarray | None:
    """Rows whose ``messages`` is exactly :func:`messages_array` of their prompt and response."""
    messages, prompt, response = (batch.column(name) for name in ("messages", "prompt", "response"))
    if messages.type != pa.list_(MESSAGE_TYPE) or batch.num_rows == 0:
        return None
    metadata = batch.schema.metadata or {}
    if all(metadata.get(key) == value for key, value in MESSAGES_DERIVED.items()):
        return messages.is_valid().to_numpy(zero_copy_only=False)
    offsets = pc.subtract(messages.offsets, messages.offsets[0]).to_numpy(zero_copy_only=False)
    has_response = response.is_valid().to_numpy(zero_copy_only=False)
    shaped = np.diff(offsets) == 1 + has_response  # user (+ assistant) messages, as messages_array makes
    if messages.null_count:
        shaped &= messages.is_valid().to_numpy(zero_copy_only=False)
    if not shaped.any():
        return None
    values = messages.values.slice(messages.offsets[0].as_py())
    rows = np.flatnonzero(shaped)
    same = np.ones(len(rows), dtype=bool)
    # the user message of each shaped row, then the assistant message of those with a response
    for turn, role, text, of in ((0, "user", prompt, rows), (1, "assistant", response, rows[has_response[rows]])):
        if not len(of):
            continue
        aligned = len(of) == batch.num_rows and turn == 0 and len(values) == batch.num_rows
        picked = values if aligned else values.take(pa.array(offsets[of] + turn))
        text = text if len(of) == batch.num_rows else text.take(pa.array(of))
        ok = pc.and_(
            pc.and_(pc.fill_null(pc.equal(picked.field("role"), role), False), picked.is_valid()),
            pc.and_(
                pc.fill_null(pc.equal(picked.field("content"), text.cast(pa.string())), False),
                pc.and_(picked.field("tool_calls").is_null(), picked.field("name").is_null()),
            ),
        ).to_numpy(zero_copy_only=False)
        if turn == 0:
            same &= ok
        else:
            same[np.searchsorted(rows, of)] &= ok
    derivable = np.zeros(batch.num_rows, dtype=bool)
    derivable[rows[same]] = True
    return derivable


def compact_messages(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with ``messages`` null where it is derivable from ``prompt`` and ``response``
    (:func:`messages_array`): the raw archive does not store that text twice. A batch
    whose schema carries :data:`MESSAGES_DERIVED` (its reader built them so) is
    compacted without comparing texts; other batches row by row.

    :func:`restore_messages` puts them back. Normalized rows always have
    messages, so a null there means "derived"."""
    rows = _derivable_rows(batch)
    metadata = batch.schema.metadata or {}
    if any(key in metadata for key in MESSAGES_DERIVED):  # true of the rows written here only
        batch = batch.replace_schema_metadata({k: v for k, v in metadata.items() if k not in MESSAGES_DERIVED} or None)
    if rows is None or not rows.any():
        return batch
    messages = batch.column("messages")
    if rows.all():
        compacted = pa.nulls(batch.num_rows, messages.type)
    else:
        keep = ~rows
        offsets = pc.subtract(messages.offsets, messages.offsets[0]).to_numpy(zero_copy_only=False)
        lengths = np.diff(offsets) * keep
        new_offsets = np.zeros(batch.num_rows + 1, dtype=np.int32)
        np.cumsum(lengths, out=new_offsets[1:])
        positions = np.concatenate(
            [np.arange(start, end) for start, end, kept in zip(offsets[:-1], offsets[1:], keep) if kept]
        )
        values = messages.values.slice(messages.offsets[0].as_py()).take(pa.array(positions, pa.int64()))
        compacted = pa.ListArray.from_arrays(
            pa.array(new_offsets), values, type=messages.type, mask=pa.array(rows)
        )
    index = batch.schema.get_field_index("messages")
    return batch.set_column(index, batch.schema.field(index), compacted)


def restore_messages(batch: pa.RecordBatch) -> pa.RecordBatch:
    """:func:`compact_messages` undone: null ``messages`` derived from ``prompt`` and ``response``."""
    if "messages" not in batch.schema.names:
        return batch
    messages = batch.column("messages")
    if messages.null_count == 0:
        return batch
    index = batch.schema.get_field_index("messages")
    derived = messages_array(batch.column("prompt"), batch.column("response")).cast(messages.type)
    if messages.null_count == batch.num_rows:
        restored = derived
    else:
        nulls = messages.is_null().to_numpy(zero_copy_only=False)
        picks = np.arange(batch.num_rows) + nulls * batch.num_rows
        restored = pa.concat_arrays([messages, derived]).take(pa.array(picks))
    return batch.set_column(index, batch.schema.field(index), restored)
