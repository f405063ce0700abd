"""What the test server answers: deterministic replies keyed on the request.

Judge requests (the design document's prompt) get ``{"score", "reasoning"}``
with a score derived from a hash of the answer (plus a small per-model
offset, so a committee mostly agrees); models named ``random-*`` answer
noise, for agreement tests. Ragas 0.4.3's prompts (statement generation, NLI
verdicts, answer-relevance questions, context-precision verdicts) get valid
JSON for their output models, computed from word overlap, so the metrics are
real numbers a test can predict. Embeddings are hashed bags of words
(non-negative, so cosine similarity stays in [0, 1]).

Directives written into a trace's text steer the reply, so a test states
its case in its data:

* ``[[reply:garbage]]`` — content that is not JSON; ``[[reply:garbagex2]]`` — not JSON
  to the first 2 requests with this content (per server reset), then a score;
* ``[[reply:score=1.7]]`` — that score, no scale (out of range unless in [0, 1]);
* ``[[reply:scale10=8]]`` — ``{"score": 8, "scale": "0-10"}``;
* ``[[reply:fenced]]`` — the JSON inside a Markdown fence after a sentence;
* ``[[reply:noscore]]`` — JSON without a score;
* ``[[reply:badbody]]`` — HTTP 200 whose body is not JSON; ``[[reply:nochoices]]`` — no choices;
* ``[[fail:503x2]]`` — the first 2 requests with this content answer HTTP 503;
* ``[[sleep:5]]`` — wait 5 s before answering (timeouts);
* ``[[ragas:garbage]]`` / ``[[ragas:fail500]]`` — the same for Ragas requests;
* ``[[ragas:nostatements]]`` — the statement generator finds no statement;
* ``[[ragas:emptyquestion]]`` — the answer-relevance prompt gets an empty question
  (Ragas then scores answer relevancy 0.0 without asking for embeddings).

A directive may name a model: ``[[reply@judge-b:score=0.1]]`` applies to
``judge-b`` only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct

EMBEDDING_DIMENSIONS = 64

_DIRECTIVE = re.compile(r"\[\[(reply|fail|sleep|ragas)(?:@([^:\]]+))?:([^\]]*)\]\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("the a an of to in is it and or for on with as at by be this that are was what how do does".split())

# Ragas 0.4.3 prompt instructions (ragas/metrics/collections/*/util.py), matched by their opening words.
STATEMENTS = "Given a question and an answer, analyze the complexity"
NLI = "Your task is to judge the faithfulness of a series of statements"
ANSWER_RELEVANCE = "Generate a question for the given answer"
CONTEXT_PRECISION = "Given question, answer and context verify if the context was useful"
JUDGE = "Evaluate the following question and answer."


def directives(text: str, model: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for kind, only_model, value in _DIRECTIVE.findall(text or ""):
        if only_model and only_model != model:
            continue
        found[kind] = value
    return found


def stable_fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall((text or "").lower()) if w not in _STOP]


def judge_score(model: str, question: str, answer: str) -> float:
    if model.startswith("random-"):
        return round(stable_fraction(model, question, answer), 2)
    base = 0.2 + 0.7 * stable_fraction(question, answer)
    offset = (stable_fraction(model) - 0.5) * 0.1
    return round(min(1.0, max(0.0, base + offset)), 2)


def _judge_fields(text: str) -> tuple[str, str]:
    question = re.search(r"\*\*Question\*\*: (.*?)\n\*\*Answer\*\*: ", text, re.S)
    answer = re.search(r"\*\*Answer\*\*: (.*)\Z", text, re.S)
    return (question.group(1) if question else ""), (answer.group(1) if answer else text)


def judge_reply(model: str, user_text: str, steer: dict[str, str]) -> str:
    question, answer = _judge_fields(user_text)
    reply = steer.get("reply", "")
    if reply == "garbage":
        return "I think this answer is pretty good {score: high"
    if reply == "noscore":
        return json.dumps({"verdict": "good", "reasoning": "no number given"})
    if reply.startswith("score="):
        return json.dumps({"score": float(reply.split("=", 1)[1]), "reasoning": "as instructed"})
    if reply.startswith("scale10="):
        return json.dumps({"score": float(reply.split("=", 1)[1]), "scale": "0-10", "reasoning": "on a 0-10 scale"})
    payload = json.dumps({"score": judge_score(model, question, answer), "reasoning": f"{len(answer)} characters judged"})
    if reply == "fenced":
        return f"Here is my evaluation:\n```json\n{payload}\n```"
    return payload


def _ragas_input(text: str) -> dict:
    marker = "Now perform the same with the following input\ninput: "
    start = text.rfind(marker)
    if start == -1:
        return {}
    body = text[start + len(marker):]
    end = body.rfind("\nOutput:")
    try:
        return json.loads(body[:end] if end != -1 else body)
    except ValueError:
        return {}


def _sentences(text: str) -> list[str]:
    text = _DIRECTIVE.sub("", text)
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if len(words(p)) >= 1]


def _overlap(a: str, b: str) -> float:
    left = set(words(a))
    if not left:
        return 0.0
    return len(left & set(words(b))) / len(left)


def ragas_kind(text: str) -> str | None:
    for kind in (STATEMENTS, NLI, ANSWER_RELEVANCE, CONTEXT_PRECISION):
        if kind in text:
            return kind
    return None


def ragas_reply(kind: str, text: str, steer: dict[str, str]) -> str:
    if steer.get("ragas") == "garbage":
        return "statements: maybe, verdict: perhaps"
    data = _ragas_input(text)
    if kind == STATEMENTS:
        if steer.get("ragas") == "nostatements":
            return json.dumps({"statements": []})
        return json.dumps({"statements": _sentences(data.get("answer", ""))})
    if kind == NLI:
        context = data.get("context", "")
        return json.dumps(
            {
                "statements": [
                    {
                        "statement": statement,
                        "reason": "words found in the context" if _overlap(statement, context) >= 0.5 else "not in the context",
                        "verdict": int(_overlap(statement, context) >= 0.5),
                    }
                    for statement in data.get("statements", [])
                ]
            }
        )
    if kind == ANSWER_RELEVANCE:
        if steer.get("ragas") == "emptyquestion":
            return json.dumps({"question": "", "noncommittal": 0})
        response = data.get("response", "")
        noncommittal = int(any(p in response.lower() for p in ("i don't know", "i am not sure", "i'm not sure")))
        head = " ".join(_DIRECTIVE.sub("", response).split()[:12])
        return json.dumps({"question": f"What about {head}?", "noncommittal": noncommittal})
    if kind == CONTEXT_PRECISION:
        useful = _overlap(data.get("context", ""), data.get("answer", "")) >= 0.2
        return json.dumps({"reason": "shares words with the answer" if useful else "unrelated", "verdict": int(useful)})
    raise ValueError(kind)


def embedding(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in words(text):
        index = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % EMBEDDING_DIMENSIONS
        vector[index] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def encode_embedding(vector: list[float], encoding_format: str | None):
    if encoding_format == "base64":
        import base64

        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
