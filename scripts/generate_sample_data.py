#!/usr/bin/env python3
"""Write the bundled sample data (``materializer_assets/sample_data/``), deterministically.

    python scripts/generate_sample_data.py [--out DIR] [--seed N]

Same seed, same bytes: everything comes from one seeded ``random.Random``,
timestamps are fixed dates (never the current time), JSON keys are sorted and
files are written in a fixed order. Pure standard library plus pyarrow (for
the one Parquet file; its footer names the pyarrow version that wrote it).

The sample exercises everything the file reader handles: a Langfuse
blob-storage export (traces, observations incl. one Parquet window, scores),
OpenAI-chat JSONL and Langfuse-observation JSONL with our extension fields,
three days, three models plus an awkward name, consent granted / refused /
unknown in every spelling, multi-turn chats, tool calls, RAG contexts, user
feedback, PII, null and empty responses, a duplicate trace id across two
files, and a few malformed records. See ``sample_data/README.md``.

``chat/docs-assistant.jsonl`` holds answers whose quality differs on purpose:
a documentation assistant that sometimes evades (a user regenerates and gets a
grounded answer), so rewards spread and the quick start has SFT, DPO and KTO
rows to show. Its records use no randomness, so adding them left every other
file as it was.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "materializer_assets" / "sample_data"
DEFAULT_SEED = 20260418

PROJECT_ID = "cm9sample0project0000001"
EXPORT_ROOT = f"langfuse-export/{PROJECT_ID}"
DAYS = ("2026-04-16", "2026-04-17", "2026-04-18")
QWEN = "Qwen/Qwen3-Coder-4B-Instruct"
GLM = "glm-5-32b"
GPT = "gpt-4o-mini-2024-07-18"
ODD_MODEL = "acme|router v2"  # '|' and a space: breaks Dagster keys and paths unless slugged

# Each user's consent as their traces record it; the registry overrides some (see REGISTRY_ROWS).
USER_CONSENT = {
    "u-0001": "granted",
    "u-0002": "granted",
    "u-0003": "granted",  # revoked in the registry
    "u-0004": "refused",
    "u-0005": "granted",  # registry: granted, later revoked (newest row wins)
    "u-0006": "unknown",
    "u-0007": "granted",
    "u-0008": "refused",
    "u-0009": "unknown",  # granted only by the registry
    "u-0010": "unknown",
    "u-0011": "granted",  # registry says "maybe": unknown wins over the trace
    "u-0012": "granted",
}
REGISTRY_ROWS = (
    ("u-0003", "false", "2026-04-17T08:00:00Z"),
    ("u-0005", "true", "2026-03-01T12:00:00Z"),
    ("u-0005", "revoked", "2026-04-10T09:30:00Z"),
    ("u-0009", "true", "2026-04-01T00:00:00Z"),
    ("u-0011", "maybe", "2026-04-02T00:00:00Z"),
    ("u-0012", "yes", "2026-02-14T10:00:00Z"),
)

# How a trace says it: ("tag", tag) or ("meta", value of consent_training); None says nothing.
CONSENT_MARKERS = {
    "granted": (("tag", "consent:training"), ("meta", "true"), ("meta", "yes"), ("meta", "1"), ("meta", "Granted")),
    "refused": (("tag", "consent:refused"), ("tag", "no-consent"), ("meta", "false"), ("meta", "no"), ("meta", "0")),
    "unknown": (None, ("meta", ""), ("meta", "maybe")),
}
# Plain JSONL may also use our explicit ``consent`` field.
EXPLICIT_CONSENT = {
    "granted": (True, "true", "yes", "1"),
    "refused": (False, "false", "no", "0"),
    "unknown": ("", None, "unsure"),
}

PRICES_PER_MILLION = {GPT: (0.15, 0.6), GLM: (0.2, 0.8), QWEN: (0.05, 0.1)}  # USD per 1M tokens, in/out

SYSTEM_SUPPORT = "You are a helpful banking assistant. Never reveal full card numbers."
SYSTEM_CODING = "You are a senior Python engineer. Answer with short, correct code."
SYSTEM_DOCS = "Answer using only the context. If the context does not say, say you don't know."
SYSTEM_AGENT = "You are an assistant with access to tools. Call a tool when you need live data."

SUPPORT_QA = (
    (
        "Hi, I lost my card 4111 1111 1111 1111, can you block it? My phone is +1 415-555-0134.",
        "I've blocked the card ending in 1111. A replacement ships within 5 business days and we'll "
        "text +1 415-555-0134 when it does.",
    ),
    (
        "Please change my email from jane.doe@example.com to jane.d@example.org.",
        "Done: statements now go to jane.d@example.org. We sent a confirmation to jane.doe@example.com.",
    ),
    ("What is my account balance?", "Your current balance is $1,234.56."),
    ("Why was I charged a $35 overdraft fee on April 12?", "Your balance went below zero after a $120.00 card payment; "
     "the fee is refundable once per year, and I've requested the refund."),
    ("Can you call me back at (212) 555-0199 tomorrow morning?", "Sure, an advisor will call (212) 555-0199 between "
     "9 and 11 am tomorrow."),
    ("I can't log in from my home IP 203.0.113.42, it says blocked.", "The address 203.0.113.42 was blocked after five "
     "failed attempts; I've unblocked it. Please reset your password if you didn't make them."),
    ("What are your branch opening hours on Saturday?", "Most branches open 9:00-13:00 on Saturdays."),
    ("How do I dispute a transaction?", "Open the transaction in the app, tap 'Report a problem', then 'Dispute'."),
)
SUPPORT_FOLLOW_UPS = (
    ("Transfer $100 to savings.", "Done, $100 transferred to savings."),
    ("And what's my savings balance now?", "Your savings balance is $2,100.00."),
    ("Thanks! Can you email the receipt to mark.lee@example.net?", "Sent the receipt to mark.lee@example.net."),
)
CODING_QA = (
    (
        "Write a Python function that checks whether a string is a palindrome.",
        "```python\ndef is_palindrome(text: str) -> bool:\n"
        "    cleaned = ''.join(c.lower() for c in text if c.isalnum())\n"
        "    return cleaned == cleaned[::-1]\n```",
    ),
    (
        "Why does `pip install` fail with 'externally-managed-environment'?",
        "Your system Python is managed by the OS (PEP 668). Create a virtualenv: `python -m venv .venv && "
        ". .venv/bin/activate`, then install there.",
    ),
    (
        "My script sets OPENAI_API_KEY=sk-proj-SAMPLE0000FAKEKEY1234567890abcd and I get 401. Why?",
        "A 401 means the key is invalid or revoked. Never paste keys into chats: rotate "
        "sk-proj-SAMPLE0000FAKEKEY1234567890abcd now and load the new one from the environment.",
    ),
    (
        "Convert to pandas: SELECT user_id, COUNT(*) FROM events GROUP BY user_id",
        "```python\ncounts = events.groupby('user_id').size().reset_index(name='count')\n```",
    ),
    (
        "Explain the difference between a list and a tuple in Python.",
        "Lists are mutable and meant for homogeneous sequences; tuples are immutable, hashable when their "
        "items are, and suit fixed records.",
    ),
    (
        "Fix the off-by-one: for i in range(1, len(xs)): total += xs[i]",
        "Start at 0, or better iterate directly: `total = sum(xs)`.",
    ),
)
CODING_FOLLOW_UPS = (
    ("Now add type hints and a docstring.", "```python\ndef is_palindrome(text: str) -> bool:\n"
     "    \"\"\"True if text reads the same backwards, ignoring case and punctuation.\"\"\"\n    ...\n```"),
    ("Can you write a pytest for it?", "```python\ndef test_is_palindrome():\n    assert is_palindrome('A man, a plan')"
     " is False\n    assert is_palindrome('Racecar')\n```"),
)
DOCS_QA = (
    (
        "How do I rotate my API key?",
        (
            "API keys are rotated under Settings > API keys > Rotate. The old key stays valid for 24 hours.",
            "If a key leaked, email security@acme-cloud.example immediately.",
        ),
        "Go to Settings > API keys and click Rotate; the old key keeps working for 24 hours.",
    ),
    (
        "What is the rate limit on the free tier?",
        (
            "Free tier: 60 requests per minute and 10,000 per day.",
            "Enterprise customers can ask their account manager for higher limits.",
        ),
        "The free tier allows 60 requests per minute and 10,000 per day.",
    ),
    (
        "How do I allowlist our office IP?",
        (
            "Allowed IPs are set in Network > Allowlist, e.g. 198.51.100.7/32.",
            "Allowlist changes apply within 5 minutes.",
        ),
        "Add it under Network > Allowlist (for example 198.51.100.7/32); it applies within 5 minutes.",
    ),
    (
        "Who handles GDPR deletion requests?",
        ("Data deletion requests go to privacy@acme-cloud.example or +44 20 7946 0958.",),
        "Write to privacy@acme-cloud.example or call +44 20 7946 0958.",
    ),
    (
        "Can I export my data as Parquet?",
        ("Exports are available as CSV, JSONL and Parquet from Project > Export.",),
        "Yes: Project > Export offers Parquet, as well as CSV and JSONL.",
    ),
    (
        "Is there an SLA for the free tier?",
        ("The 99.9% uptime SLA applies to paid plans only.",),
        "No, the 99.9% SLA covers paid plans only.",
    ),
)
TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Status of an order by id",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    },
)
TOOL_TASKS = (
    ("What's the weather in London?", "get_weather", {"city": "London"}, {"temperature": 15, "condition": "cloudy"},
     "It's 15 °C and cloudy in London."),
    ("Where is my order A-10422?", "get_order_status", {"order_id": "A-10422"},
     {"status": "shipped", "eta": "2026-04-20"},
     "Order A-10422 has shipped and should arrive on 2026-04-20."),
    ("Is it raining in Zürich right now?", "get_weather", {"city": "Zürich"}, {"temperature": 9, "condition": "rain"},
     "Yes, it's raining in Zürich (9 °C)."),
    ("Has order B-20931 shipped? Reply to ops@shop.example if delayed.", "get_order_status", {"order_id": "B-20931"},
     {"status": "delayed", "eta": "2026-04-24"}, "It's delayed until 2026-04-24; I've notified ops@shop.example."),
)


# The documentation assistant: (question, retrieved contexts, grounded answer, evasive answer).
# A grounded answer restates the question and says only what the contexts say; an evasive one
# says nothing. (With the bundled test judge, `python -m materializer_tests.openai_server`, the
# grounded ones mostly reach the "preferred" threshold and the evasive ones the "non_preferred" one.)
DOCS_ASSISTANT_QA = {
    "free-tier-rate": (
        "How many requests per minute does the free tier allow?",
        ("Free tier: 60 requests per minute and 10,000 requests per day.",),
        "The free tier allows 60 requests per minute (and 10,000 requests per day).",
        "I am not sure, maybe check the help center.",
    ),
    "export-formats": (
        "Which export formats does the Project Export page offer?",
        ("The Project Export page offers CSV, JSONL and Parquet exports.",),
        "The Project Export page offers three export formats: CSV, JSONL and Parquet.",
        "I'm not sure about that, sorry.",
    ),
    "free-tier-sla": (
        "Does the uptime SLA cover the free tier?",
        ("The 99.9% uptime SLA covers paid plans only, not the free tier.",),
        "No: the 99.9% uptime SLA covers paid plans only, not the free tier.",
        "I don't know, please ask support.",
    ),
    "old-key-validity": (
        "How long does the old API key stay valid after a rotation?",
        ("API keys are rotated under Settings > API keys > Rotate.", "The old key stays valid for 24 hours after a rotation."),
        "The old key stays valid for 24 hours after a rotation.",
        "I don't know, please ask support.",
    ),
    "allowlist-delay": (
        "When do allowlist changes take effect?",
        ("Allowlist changes take effect within 5 minutes of saving them.",),
        "Allowlist changes take effect within 5 minutes after saving them.",
        "I'm not sure, that depends on your plan.",
    ),
    "rotate-where": (
        "Where do I rotate an API key?",
        ("API keys are rotated under Settings > API keys > Rotate.", "The old key stays valid for 24 hours after a rotation."),
        "You rotate an API key under Settings > API keys > Rotate.",
        "I don't know, please ask support.",
    ),
}
# (day, time, user, question, answers in the order given, consent field): "evasive,grounded" is a user
# who regenerated an evasive answer. Users keep their consent (USER_CONSENT, REGISTRY_ROWS).
DOCS_ASSISTANT_CHATS = (
    ("2026-04-16", "09:10", "u-0002", "free-tier-rate", ("evasive", "grounded"), True),
    ("2026-04-16", "14:40", "u-0007", "free-tier-sla", ("grounded",), "yes"),
    ("2026-04-17", "10:05", "u-0007", "export-formats", ("evasive", "grounded"), True),
    ("2026-04-17", "16:20", "u-0012", "old-key-validity", ("evasive", "grounded"), None),
    ("2026-04-17", "17:00", "u-0004", "old-key-validity", ("grounded",), False),  # refused: never trained on
    ("2026-04-18", "08:30", "u-0012", "free-tier-sla", ("evasive", "grounded"), None),
    ("2026-04-18", "11:45", "u-0002", "export-formats", ("evasive", "grounded"), True),
    ("2026-04-18", "13:15", "u-0001", "allowlist-delay", ("evasive", "grounded"), "1"),
    ("2026-04-18", "15:50", "u-0009", "rotate-where", ("grounded",), None),  # granted by the registry only
    ("2026-04-18", "18:05", "u-0003", "free-tier-rate", ("grounded",), True),  # forgotten (registry revoked)
)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def langfuse_time(moment: datetime) -> str:
    """Langfuse export timestamps: ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def iso_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def window_name(moment: datetime) -> str:
    """An export window end as file name, colons replaced so it is portable."""
    return moment.strftime("%Y-%m-%dT%H-%M-%S")


def message(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


class SampleWriter:
    """Builds every file in memory (the sample is small), then writes them in path order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lines: dict[str, list[bytes]] = {}
        self.parquet_rows: dict[str, list[dict[str, Any]]] = {}
        self.parquet_tables: dict[str, pa.Table] = {}

    # ------------------------------------------------------------ helpers

    def hex_id(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def moment(self, day: str, start_hour: int = 7, end_hour: int = 22) -> datetime:
        base = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
        seconds = self.rng.randrange(start_hour * 3600, end_hour * 3600)
        return base + timedelta(seconds=seconds, microseconds=self.rng.randrange(0, 1000) * 1000)

    def user(self) -> str:
        return self.rng.choice(sorted(USER_CONSENT))

    def consent_marker(self, user_id: str) -> tuple[str, str] | None:
        return self.rng.choice(CONSENT_MARKERS[USER_CONSENT[user_id]])

    def add_line(self, path: str, record: dict[str, Any]) -> None:
        self.lines.setdefault(path, []).append(dumps(record).encode("utf-8"))

    def add_raw_line(self, path: str, line: bytes) -> None:
        """A line written as is (malformed on purpose)."""
        self.lines.setdefault(path, []).append(line)

    # ------------------------------------------------------------ conversations

    def support_conversation(self, turns: int) -> tuple[list[dict], dict]:
        question, answer = self.rng.choice(SUPPORT_QA)
        messages = [message("system", SYSTEM_SUPPORT), message("user", question)]
        for follow_question, follow_answer in SUPPORT_FOLLOW_UPS[: turns - 1]:
            messages += [message("assistant", answer), message("user", follow_question)]
            answer = follow_answer
        return messages, message("assistant", answer)

    def coding_conversation(self, turns: int) -> tuple[list[dict], dict]:
        question, answer = self.rng.choice(CODING_QA)
        messages = [message("system", SYSTEM_CODING), message("user", question)]
        for follow_question, follow_answer in CODING_FOLLOW_UPS[: turns - 1]:
            messages += [message("assistant", answer), message("user", follow_question)]
            answer = follow_answer
        return messages, message("assistant", answer)

    def docs_question(self) -> tuple[list[dict], dict, list[str]]:
        question, contexts, answer = self.rng.choice(DOCS_QA)
        context_text = "\n\n".join(contexts)
        messages = [message("system", f"{SYSTEM_DOCS}\n\nContext:\n{context_text}"), message("user", question)]
        return messages, message("assistant", answer), list(contexts)

    def tool_call_messages(self) -> tuple[list[dict], dict, list[dict], dict]:
        """(messages before the call, the tool-call reply, messages after the tool ran, final answer)."""
        question, tool, arguments, result, answer = self.rng.choice(TOOL_TASKS)
        call_id = f"call_{self.hex_id(8)}"
        call = message(
            "assistant",
            None,
            tool_calls=[{"id": call_id, "type": "function", "function": {"name": tool, "arguments": dumps(arguments)}}],
        )
        before = [message("system", SYSTEM_AGENT), message("user", question)]
        after = before + [call, message("tool", dumps(result), tool_call_id=call_id)]
        return before, call, after, message("assistant", answer)

    # ------------------------------------------------------------ Langfuse blob export

    def langfuse_export(self) -> None:
        scenarios = ("support", "support_multi", "docs", "docs", "coding", "coding_multi", "tool")
        for day in DAYS:
            for index in range(18):
                start = self.moment(day)
                self.export_trace(start, scenarios[index % len(scenarios)])
        self.export_edge_cases()

    def export_path(self, kind: str, moment: datetime) -> str:
        """The file of the daily export window (ending next midnight) that holds ``moment``.

        Observations of the last day go to two windows: the morning as JSONL,
        the afternoon as Parquet (the format the export defaults to today).
        """
        day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        window_end, extension = day_start + timedelta(days=1), "jsonl"
        if kind == "observations" and day_start.date().isoformat() == DAYS[-1]:
            if moment.hour < 12:
                window_end = day_start + timedelta(hours=12)
            else:
                extension = "parquet"
        return f"{EXPORT_ROOT}/{kind}/{window_name(window_end)}.{extension}"

    def add_observation(self, row: dict[str, Any]) -> None:
        path = self.export_path("observations", datetime.fromisoformat(row["start_time"]).replace(tzinfo=timezone.utc))
        if path.endswith(".parquet"):
            self.parquet_rows.setdefault(path, []).append(row)
        else:
            self.add_line(path, row)

    def export_trace(self, start: datetime, scenario: str, user_id: str | None = None) -> None:
        """One trace: its row, its observations, its scores."""
        rng = self.rng
        user_id = user_id or self.user()
        trace_id = self.hex_id(32)
        tags = ["production"] if rng.random() < 0.8 else ["staging"]
        environment = tags[0]
        trace_metadata = {
            "app_version": f"2.{rng.randrange(3, 6)}.{rng.randrange(0, 10)}",
            "tenant": rng.choice(("acme", "globex")),
        }
        generation_metadata: dict[str, str] = {}
        marker = self.consent_marker(user_id)
        if marker is not None and marker[0] == "tag":
            tags.append(marker[1])
        elif marker is not None:  # the metadata key sits on the trace, or on its generations
            (generation_metadata if rng.random() < 0.3 else trace_metadata)["consent_training"] = marker[1]
        clock = start + timedelta(milliseconds=rng.randrange(5, 40))

        def observation(kind: str, name: str, duration_ms: int, **fields: Any) -> dict[str, Any]:
            nonlocal clock
            began, clock = clock, clock + timedelta(milliseconds=duration_ms)
            row = {
                "id": self.hex_id(16),
                "trace_id": trace_id,
                "project_id": PROJECT_ID,
                "environment": environment,
                "type": kind,
                "parent_observation_id": None,
                "start_time": langfuse_time(began),
                "end_time": langfuse_time(clock),
                "name": name,
                "metadata": {},
                "level": "DEFAULT",
                "status_message": None,
                "input": None,
                "output": None,
                "provided_model_name": None,
                "usage_details": {},
                "cost_details": {},
            }
            row.update(fields)
            self.add_observation(row)
            return row

        def generation(model: str, messages: list[dict], reply: dict, extra_metadata: dict | None = None) -> None:
            prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 12
            completion_tokens = len(str(reply.get("content") or "")) // 4 + 3
            input_price, output_price = PRICES_PER_MILLION[model]
            cost_in = round(prompt_tokens * input_price / 1e6, 8)
            cost_out = round(completion_tokens * output_price / 1e6, 8)
            observation(
                "GENERATION",
                "llm-call",
                rng.randrange(300, 4000),
                input=dumps(messages),  # the export writes input and output as JSON text
                output=dumps(reply),
                provided_model_name=model,
                usage_details={
                    "input": prompt_tokens,
                    "output": completion_tokens,
                    "total": prompt_tokens + completion_tokens,
                },
                cost_details={"input": cost_in, "output": cost_out, "total": round(cost_in + cost_out, 8)},
                metadata={**generation_metadata, **(extra_metadata or {})},
            )

        observation("SPAN", "handle-request", rng.randrange(5, 20))
        if scenario in ("support", "support_multi"):
            messages, reply = self.support_conversation(3 if scenario == "support_multi" else 1)
            generation(GPT, messages, reply)
        elif scenario in ("coding", "coding_multi"):
            messages, reply = self.coding_conversation(2 if scenario == "coding_multi" else 1)
            generation(QWEN, messages, reply)
        elif scenario == "docs":
            messages, reply, contexts = self.docs_question()
            observation(
                "RETRIEVER",
                "vector-search",
                rng.randrange(20, 120),
                input=dumps({"query": messages[-1]["content"], "top_k": 3}),
                output=dumps([{"page_content": text, "metadata": {"source": "docs"}} for text in contexts]),
            )
            generation(GLM, messages, reply)
        else:  # the model calls a tool, the tool runs, the model answers
            model = rng.choice((GPT, GLM))
            messages, call, after, reply = self.tool_call_messages()
            generation(model, messages, call, {"tools": dumps(list(TOOLS))})  # metadata values are text
            function = call["tool_calls"][0]["function"]
            observation(
                "TOOL", function["name"], rng.randrange(50, 400), input=function["arguments"], output=after[-1]["content"]
            )
            generation(model, after, reply)
        self.add_line(
            self.export_path("traces", start),
            {
                "id": trace_id,
                "timestamp": langfuse_time(start),
                "name": f"{scenario.split('_')[0]}-request",
                "environment": environment,
                "project_id": PROJECT_ID,
                "metadata": trace_metadata,
                "user_id": user_id,
                "session_id": f"sess-{self.hex_id(8)}",
                "release": "2026.04.2",
                "public": False,
                "bookmarked": False,
                "tags": tags,
                "input": dumps({"question": messages[-1]["content"]}),
                "output": dumps({"answer": reply["content"]}),
            },
        )
        self.export_scores(trace_id, start)

    def export_scores(self, trace_id: str, start: datetime) -> None:
        rng = self.rng
        roll = rng.random()
        scores = []
        if roll < 0.45:  # the user's thumbs up/down, sent through the API
            name = rng.choice(("user_feedback", "user-feedback"))
            scores.append((name, float(rng.random() < 0.75), "API", "NUMERIC"))
            if rng.random() < 0.2:  # a second vote: the reader keeps the mean
                scores.append((name, float(rng.random() < 0.5), "API", "NUMERIC"))
        if roll > 0.6:  # an LLM-as-a-judge evaluator: not user feedback
            scores.append(("faithfulness", round(rng.uniform(0.4, 1.0), 3), "EVAL", "NUMERIC"))
        if rng.random() < 0.1:  # a human annotation, categorical
            scores.append(("quality", "good", "ANNOTATION", "CATEGORICAL"))
        for name, value, source, data_type in scores:
            # Feedback may come in hours later, in a later window's file.
            moment = start + timedelta(minutes=rng.randrange(1, 600))
            self.add_line(
                self.export_path("scores", moment),
                {
                    "id": self.hex_id(16),
                    "timestamp": langfuse_time(moment),
                    "project_id": PROJECT_ID,
                    "environment": "production",
                    "trace_id": trace_id,
                    "observation_id": None,
                    "name": name,
                    "value": 0.0 if data_type == "CATEGORICAL" else value,
                    "string_value": value if data_type == "CATEGORICAL" else None,
                    "source": source,
                    "comment": None,
                    "data_type": data_type,
                },
            )

    def export_edge_cases(self) -> None:
        """Rows that make the export interesting to read."""
        # A trace that starts just before midnight: its row is in day 1's file,
        # its generation (and so its example) in day 2's.
        self.export_trace(datetime(2026, 4, 16, 23, 59, 59, 990000, tzinfo=timezone.utc), "docs", user_id="u-0001")

        # Traces logged without any generation, input and output on the trace row:
        # one names its model in metadata, the other does not (partition "unknown").
        for day, model, user_id in ((DAYS[0], None, "u-0006"), (DAYS[1], GLM, "u-0002")):
            question, answer = self.rng.choice(SUPPORT_QA)
            start = self.moment(day)
            metadata = {"consent_training": "true", "model": model} if model else {}
            self.add_line(
                self.export_path("traces", start),
                {
                    "id": self.hex_id(32),
                    "timestamp": langfuse_time(start),
                    "name": "legacy-chat",
                    "environment": "production",
                    "project_id": PROJECT_ID,
                    "metadata": metadata,
                    "user_id": user_id,
                    "session_id": None,
                    "tags": [],
                    "input": dumps([message("user", question)]),
                    "output": answer,
                },
            )

        # A generation that failed (null output) and one that returned an empty string.
        for output, level, status in ((None, "ERROR", "upstream timeout"), ("", "DEFAULT", None)):
            start = self.moment(DAYS[1])
            trace_id = self.hex_id(32)
            messages, _ = self.support_conversation(1)
            self.add_line(
                self.export_path("traces", start),
                {"id": trace_id, "timestamp": langfuse_time(start), "name": "support-request", "user_id": "u-0007",
                 "session_id": None, "environment": "production", "project_id": PROJECT_ID,
                 "metadata": {"consent_training": "yes"}, "tags": ["production"], "input": None, "output": None},
            )
            self.add_observation(
                {"id": self.hex_id(16), "trace_id": trace_id, "project_id": PROJECT_ID, "environment": "production",
                 "type": "GENERATION", "parent_observation_id": None, "name": "llm-call",
                 "start_time": langfuse_time(start), "end_time": langfuse_time(start + timedelta(seconds=30)),
                 "level": level, "status_message": status, "input": dumps(messages), "output": output,
                 "provided_model_name": GPT, "metadata": {}, "usage_details": {"input": 40, "output": 0, "total": 40},
                 "cost_details": {}},
            )

        # A score line cut off mid-write: malformed JSON, unattributed.
        broken_at = datetime(2026, 4, 17, 13, 0, tzinfo=timezone.utc)
        self.add_raw_line(self.export_path("scores", broken_at), b'{"id": "score-broken", "trace_id": "')

    # ------------------------------------------------------------ OpenAI chat JSONL

    def chat_files(self) -> None:
        rng = self.rng
        support, coding = "chat/support-assistant.jsonl", "chat/coding-assistant.jsonl"
        resent: dict[str, Any] | None = None
        for day in DAYS:
            for index in range(14):
                user_id = self.user()
                turns = 1 + (index % 3 == 0) + (index % 6 == 0)
                if index % 2 == 0:
                    path = support
                    model = ODD_MODEL if day == DAYS[-1] and index % 4 == 0 else GPT
                    messages, reply = self.support_conversation(turns)
                else:
                    path, model = coding, QWEN
                    messages, reply = self.coding_conversation(min(turns, 2))
                record: dict[str, Any] = {"messages": messages + [reply]}
                if index % 5 != 4:  # some lines carry no id: the reader hashes their content
                    record["id"] = f"chat-{self.hex_id(12)}"
                fields: dict[str, Any] = {
                    "timestamp": iso_time(self.moment(day)),
                    "model": model,
                    "user_id": user_id,
                    "session_id": f"sess-{self.hex_id(8)}",
                    "environment": "production",
                }
                metadata: dict[str, Any] = {}
                if index % 3 == 0:  # our explicit consent field
                    fields["consent"] = rng.choice(EXPLICIT_CONSENT[USER_CONSENT[user_id]])
                elif index % 3 == 1:  # Langfuse-style: a tag or the metadata key
                    marker = self.consent_marker(user_id)
                    fields["tags"] = ["chat"] + ([marker[1]] if marker and marker[0] == "tag" else [])
                    if marker and marker[0] == "meta":
                        metadata["consent_training"] = marker[1]
                if rng.random() < 0.3:
                    fields["feedback_score"] = rng.choice((0, 1, 1, 0.5))
                if index % 2 == 1:  # our fields inside metadata this time
                    record["metadata"] = {**metadata, **fields}
                else:
                    record.update(fields)
                    if metadata:
                        record["metadata"] = metadata
                self.add_line(path, record)
                if day == DAYS[1] and index == 2:
                    resent = record

        for day in DAYS:  # tool calling: one chat ends in the call, one in the answer after it
            for answered in (False, True):
                before, call, after, answer = self.tool_call_messages()
                user_id = self.user()
                self.add_line(
                    support,
                    {
                        "id": f"chat-{self.hex_id(12)}",
                        "messages": after + [answer] if answered else before + [call],
                        "tools": list(TOOLS),
                        "timestamp": iso_time(self.moment(day)),
                        "model": GLM,
                        "user_id": user_id,
                        "consent": rng.choice(EXPLICIT_CONSENT[USER_CONSENT[user_id]]),
                    },
                )

        messages, reply, contexts = self.docs_question()  # RAG, with PII in the contexts
        self.add_line(support, {"id": "chat-rag-0001", "messages": messages + [reply], "contexts": contexts,
                                "timestamp": "2026-04-17T10:15:00.000Z", "model": GLM, "user_id": "u-0001",
                                "consent": True, "feedback_score": 1})
        # A null reply: kept raw, dropped later as an empty response.
        self.add_line(support, {"id": "chat-null-reply",
                                "messages": [message("user", "Hello?"), message("assistant", None)],
                                "timestamp": "2026-04-16T09:00:00.000Z", "model": GPT, "user_id": "u-0002",
                                "consent": "yes"})
        # The same trace sent twice: both files keep it, a later stage dedups.
        assert resent is not None
        self.add_line("chat/support-assistant-resend.jsonl", resent)

        # Malformed records, one of each kind the reader names.
        self.add_raw_line(coding, b'{"id": "chat-broken", "messages": [{"role": "user", "content": "unterminated')
        self.add_raw_line(coding, b'["not", "an", "object"]')
        self.add_line(coding, {"id": "chat-no-timestamp", "model": QWEN, "user_id": "u-0001",
                               "messages": [message("user", "Hi"), message("assistant", "Hello!")]})
        self.add_raw_line(  # Latin-1 bytes: its cell (2026-04-18, gpt-4o-mini) can still be read
            support,
            b'{"id": "chat-latin1", "messages": [{"role": "user", "content": "Caf\xe9 opening hours?"}, '
            b'{"role": "assistant", "content": "9 to 5."}], "timestamp": "2026-04-18T08:00:00.000Z", '
            b'"model": "gpt-4o-mini-2024-07-18", "consent": true}',
        )

    # ------------------------------------------------------------ Langfuse-observation JSONL

    def observation_files(self) -> None:
        rng = self.rng
        path = "observations/agent-observations.jsonl"
        for day in DAYS:
            for index in range(8):
                user_id = self.user()
                before, call, after, answer = self.tool_call_messages()
                calls_only = index % 2 == 0
                record: dict[str, Any] = {
                    "id": f"obs-{self.hex_id(16)}",
                    "input": before if calls_only else after,
                    # The Langfuse observation format: output is a list of tool calls, or the reply.
                    "output": [
                        {
                            "toolCallId": c["id"],
                            "toolName": c["function"]["name"],
                            "input": json.loads(c["function"]["arguments"]),
                        }
                        for c in call["tool_calls"]
                    ]
                    if calls_only
                    else answer["content"],
                    "metadata": {
                        "tools": [dumps(tool) for tool in TOOLS],  # JSON-encoded definitions
                        "timestamp": iso_time(self.moment(day)),
                        "model": (GLM, GPT, QWEN)[index % 3],
                        "user_id": user_id,
                        "consent": rng.choice(EXPLICIT_CONSENT[USER_CONSENT[user_id]]),
                    },
                }
                if index % 4 == 3:  # our fields at the top level this time, with a trace id
                    for key in ("timestamp", "model", "user_id", "consent"):
                        record[key] = record["metadata"].pop(key)
                    record["trace_id"] = f"trace-{self.hex_id(16)}"
                if rng.random() < 0.25:
                    record["metadata"]["feedback_score"] = rng.choice((0, 1))
                self.add_line(path, record)
        self.add_raw_line(  # invalid UTF-8, cell still readable: (2026-04-17, glm-5-32b)
            path,
            b'{"id": "obs-bad-bytes", "input": [{"role": "user", "content": "Stra\xdfe?"}], "output": "Street.", '
            b'"metadata": {"timestamp": "2026-04-17T12:00:00.000Z", "model": "glm-5-32b"}}',
        )

    # ------------------------------------------------------------ documentation assistant (no randomness)

    def docs_assistant_file(self) -> None:
        path = "chat/docs-assistant.jsonl"
        for number, (day, clock, user_id, topic, answers, consent) in enumerate(DOCS_ASSISTANT_CHATS):
            question, contexts, grounded, evasive = DOCS_ASSISTANT_QA[topic]
            context_text = "\n\n".join(contexts)
            messages = [message("system", f"{SYSTEM_DOCS}\n\nContext:\n{context_text}"), message("user", question)]
            for attempt, kind in enumerate(answers):
                record: dict[str, Any] = {
                    "id": f"chat-docs-{number:02d}-{attempt}",
                    "messages": messages + [message("assistant", grounded if kind == "grounded" else evasive)],
                    "contexts": list(contexts),
                    "timestamp": f"{day}T{clock}:{10 * attempt:02d}.000Z",
                    "model": GLM,
                    "user_id": user_id,
                    "session_id": f"sess-docs-{number:02d}",
                    "environment": "production",
                }
                if consent is not None:
                    record["consent"] = consent
                self.add_line(path, record)

    # ------------------------------------------------------------ registry and output

    def consent_registry(self) -> None:
        rows = [b"user_id,granted,updated_at"] + [",".join(row).encode() for row in REGISTRY_ROWS]
        self.lines["consent_registry.csv"] = rows

    def write(self, out: Path) -> list[Path]:
        for path, rows in self.parquet_rows.items():
            self.parquet_tables[path] = observations_table(rows)
        written = []
        for relative in sorted(set(self.lines) | set(self.parquet_tables)):
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative in self.parquet_tables:
                pq.write_table(self.parquet_tables[relative], target, compression="zstd")
            else:
                target.write_bytes(b"\n".join(self.lines[relative]) + b"\n")
            written.append(target)
        return written


def observations_table(rows: list[dict]) -> pa.Table:
    """Observations as the Parquet export types them: timestamps, maps, JSON text."""
    def timestamp(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text).replace(tzinfo=timezone.utc)

    columns = {
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "trace_id": pa.array([r["trace_id"] for r in rows], pa.string()),
        "project_id": pa.array([r["project_id"] for r in rows], pa.string()),
        "environment": pa.array([r["environment"] for r in rows], pa.string()),
        "type": pa.array([r["type"] for r in rows], pa.string()),
        "parent_observation_id": pa.array([r["parent_observation_id"] for r in rows], pa.string()),
        "start_time": pa.array([timestamp(r["start_time"]) for r in rows], pa.timestamp("us", tz="UTC")),
        "end_time": pa.array([timestamp(r["end_time"]) for r in rows], pa.timestamp("us", tz="UTC")),
        "name": pa.array([r["name"] for r in rows], pa.string()),
        "metadata": pa.array([sorted(r["metadata"].items()) for r in rows], pa.map_(pa.string(), pa.string())),
        "level": pa.array([r["level"] for r in rows], pa.string()),
        "input": pa.array([r["input"] for r in rows], pa.string()),
        "output": pa.array([r["output"] for r in rows], pa.string()),
        "provided_model_name": pa.array([r["provided_model_name"] for r in rows], pa.string()),
        "usage_details": pa.array([sorted(r["usage_details"].items()) for r in rows], pa.map_(pa.string(), pa.int64())),
        "cost_details": pa.array([sorted(r["cost_details"].items()) for r in rows], pa.map_(pa.string(), pa.float64())),
    }
    return pa.table(columns)


def generate(out: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write the sample under ``out``; returns the files written, in path order."""
    writer = SampleWriter(seed)
    writer.langfuse_export()
    writer.chat_files()
    writer.observation_files()
    writer.docs_assistant_file()
    writer.consent_registry()
    return writer.write(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the bundled sample data, deterministically.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    written = generate(args.out, args.seed)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files ({total:,} bytes) under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
