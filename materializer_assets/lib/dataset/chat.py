"""Conversations in TRL's conversational format, tool calls included.

TRL's dataset formats (https://huggingface.co/docs/trl/dataset_formats, "Tool
calling") take the messages the chat templates of transformers render:

- an assistant message that calls tools has ``tool_calls``, a list of
  ``{"id", "type": "function", "function": {"name", "arguments"}}``;
- a tool result is ``{"role": "tool", "content", "tool_call_id", "name"}``
  (``name`` = the function that ran);
- the tool definitions are a ``tools`` column of their own (a list of JSON
  schemas ``{"type": "function", "function": {"name", "description",
  "parameters"}}``), which TRL's trainers pass to the chat template per row.

The normalized trace keeps a message as ``{role, content, tool_calls (JSON
text), name}``, a tool result's call id in ``name`` when the source gave no
function name. :func:`trl_messages` turns that back into the structured form:
call ids are kept, a tool result gets both its ``tool_call_id`` and the called
function's ``name`` (looked up in the calls before it).

``arguments`` stays the JSON text the model produced (OpenAI's wire format):
a per-call dict would not fit one Parquet schema, since every tool has other
parameters. ``tools`` is stored as JSON text for the same reason; TRL's
trainers ``json.loads`` a string ``tools`` value themselves.

:func:`response_key` is what two answers are compared by (DPO pairs, their
check): the text modulo case and whitespace, plus each tool call's name and
canonical arguments, without the call ids the model made up.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import pyarrow as pa

from .text import normalize_exact

TOOL_CALL_TYPE = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("function", pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])),
    ]
)
# A message as TRL's conversational formats (and transformers' chat templates) take it.
TRL_MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        pa.field("tool_call_id", pa.string()),
        pa.field("name", pa.string()),
    ]
)
TRL_CHAT_TYPE = pa.list_(TRL_MESSAGE_TYPE)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def parse_tool_calls(text: str | None) -> list[dict] | None:
    """The calls of a normalized message's ``tool_calls`` JSON text, in TRL's shape; None when
    there are none or the text is not a list of calls."""
    if not text:
        return None
    calls = _json(text)
    if isinstance(calls, Mapping):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for call in calls:
        if not isinstance(call, Mapping):
            return None
        function = call.get("function") if isinstance(call.get("function"), Mapping) else call
        name = function.get("name")
        if not isinstance(name, str) or not name:
            return None
        call_id = call.get("id")
        out.append(
            {
                "id": str(call_id) if call_id not in (None, "") else None,
                "type": "function",
                "function": {"name": name, "arguments": _arguments_text(function.get("arguments"))},
            }
        )
    return out


def normalize_tools(text: str | None) -> str | None:
    """The row's tool definitions as JSON text of ``[{"type": "function", "function": {...}}]``,
    or None. Sources give them as a list, as JSON text, or as a list of JSON texts (Langfuse
    metadata); a bare ``{"name", "parameters"}`` schema is wrapped as a function."""
    tools = _json(text) if text else None
    if isinstance(tools, Mapping):
        tools = [tools]
    if not isinstance(tools, list):
        return None
    out = []
    for tool in tools:
        tool = _json(tool)
        if not isinstance(tool, Mapping):
            continue
        if isinstance(tool.get("function"), Mapping):
            function = tool["function"]
        elif isinstance(tool.get("name"), str):
            function = tool
        else:
            continue
        if not isinstance(function.get("name"), str) or not function["name"]:
            continue
        out.append({"type": "function", "function": dict(function)})
    return json.dumps(out, ensure_ascii=False) if out else None


def _message(role: str, content: str | None, tool_calls=None, tool_call_id=None, name=None) -> dict:
    return {"role": role, "content": content, "tool_calls": tool_calls, "tool_call_id": tool_call_id, "name": name}


def trl_messages(messages: Sequence[Mapping[str, Any]] | None) -> list[dict]:
    """Normalized messages (``{role, content, tool_calls, name}``) as TRL messages (see the module doc)."""
    out: list[dict] = []
    calls_by_id: dict[str, str] = {}  # call id → function name
    unanswered: list[dict] = []  # calls not yet answered by a tool message, in order
    for raw in messages or ():
        role = (raw.get("role") or "").strip().lower()
        content = raw.get("content")
        if role == "assistant":
            calls = parse_tool_calls(raw.get("tool_calls"))
            if calls is None and raw.get("tool_calls") and not (content or "").strip():
                content = raw.get("tool_calls")  # calls we cannot read: keep their text, lose nothing
            for call in calls or ():
                if call["id"]:
                    calls_by_id[call["id"]] = call["function"]["name"]
            unanswered = list(calls or ())
            out.append(_message("assistant", content, tool_calls=calls))
        elif role == "tool":
            name = raw.get("name")
            if name is not None and name in calls_by_id:  # the source gave the call id only
                match = next((c for c in unanswered if c["id"] == name), None)
                call_id, name = name, calls_by_id[name]
            else:
                match = next((c for c in unanswered if c["function"]["name"] == name), None)
                if match is None and name is None and len(unanswered) == 1:
                    match = unanswered[0]
                call_id = match["id"] if match is not None else None
                name = match["function"]["name"] if match is not None else name
            unanswered = [c for c in unanswered if c is not match]
            out.append(_message("tool", content or "", tool_call_id=call_id, name=name))
        else:
            out.append(_message(role, content if content is not None else "", name=raw.get("name")))
    return out


def split_conversation(
    messages: Sequence[Mapping[str, Any]] | None, prompt: str | None, response: str | None
) -> tuple[list[dict], dict | None]:
    """``(prompt side, final assistant message)`` of a reward row, in TRL's shape.

    The same split as :func:`.text.iter_row_texts`: the final assistant turn
    of ``messages`` is the answer (else ``response``), and a row without
    messages is its ``prompt`` as one user turn.
    """
    conversation = trl_messages(messages)
    final = None
    if conversation and conversation[-1]["role"] == "assistant":
        final = conversation.pop()
    elif response:
        final = _message("assistant", response)
    if not conversation and prompt:
        conversation = [_message("user", prompt)]
    return conversation, final


def has_answer(message: Mapping[str, Any] | None) -> bool:
    return bool(message) and bool((message.get("content") or "").strip() or message.get("tool_calls"))


def _canonical_arguments(arguments: str | None) -> str:
    parsed = _json(arguments) if arguments is not None else None
    if parsed is None:
        return normalize_exact(arguments)
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).casefold()


def response_key(message: Mapping[str, Any] | str | None) -> str:
    """What an answer is compared by: its text modulo case/whitespace and its tool calls'
    names and canonical arguments, call ids left out. A string is read as a message's text
    (tool calls given as their JSON text count as calls)."""
    if message is None:
        return ""
    if isinstance(message, str):
        calls = parse_tool_calls(message) if message.lstrip().startswith(("[", "{")) else None
        content, calls = (None, calls) if calls else (message, None)
    else:
        content, calls = message.get("content"), message.get("tool_calls")
    parts = [normalize_exact(content)]
    for call in calls or ():
        function = call.get("function") or {}
        parts.append(f"{function.get('name') or ''}\x1f{_canonical_arguments(function.get('arguments'))}")
    return "\x1e".join(parts)


def messages_key(messages: Sequence[Mapping[str, Any]] | str | None) -> str:
    """:func:`response_key` of a list of messages (a DPO side), or of a string side."""
    if messages is None or isinstance(messages, str):
        return response_key(messages)
    return "\x1d".join(f"{m.get('role')}\x1d{response_key(m)}" for m in messages)
