"""The judge prompt of our design document, arranged for prefix caching.

The design document's ``JUDGE_PROMPT`` puts the question and answer between
the instructions. Here the fixed part (task, criteria, output format) is the
system message and the trace goes last, so every request of a run starts with
the same tokens and vLLM's prefix cache serves them. The wording is the
design document's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

JUDGE_INSTRUCTIONS = """Evaluate the following question and answer.
**Evaluation Criteria**:
1. Accuracy: Are there technical errors?
2. Completeness: Does it cover all aspects of the question?
3. Clarity: Is it easy to understand?
Output a score between 0.0-1.0. Respond only in JSON format:
{"score": 0.85, "reasoning": "..."}"""

JUDGE_USER_TEMPLATE = """**Question**: {question}
**Answer**: {answer}"""

# The reply's shape, for servers with structured output.
JUDGE_REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "description": "Quality between 0.0 and 1.0."},
        "reasoning": {"type": "string", "description": "A short justification."},
    },
    "required": ["score", "reasoning"],
    "additionalProperties": False,
}

TRUNCATION_MARK = "\n[…truncated]"
NO_QUESTION = "(no question: the answer opens the conversation)"


@dataclass(frozen=True)
class JudgePrompt:
    """The fixed parts of a judge request; its ``version`` is part of the cache key."""

    instructions: str = JUDGE_INSTRUCTIONS
    user_template: str = JUDGE_USER_TEMPLATE
    temperature: float = 0.1
    max_tokens: int = 200
    max_field_chars: int = 12_000  # per question / answer, so one trace cannot overflow the context

    @property
    def version(self) -> str:
        """Hash of everything that changes what the judge is asked."""
        canonical = json.dumps(
            {
                "instructions": self.instructions,
                "user_template": self.user_template,
                "schema": JUDGE_REPLY_SCHEMA,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "max_field_chars": self.max_field_chars,
            },
            sort_keys=True,
        )
        return "judge-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def _clip(self, text: str) -> str:
        if len(text) <= self.max_field_chars:
            return text
        return text[: self.max_field_chars] + TRUNCATION_MARK

    def messages(self, question: str | None, answer: str) -> list[dict]:
        question = self._clip(question) if question and question.strip() else NO_QUESTION
        return [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": self.user_template.format(question=question, answer=self._clip(answer))},
        ]
