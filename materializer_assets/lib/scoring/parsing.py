"""Reading a judge's reply: a score in [0, 1], or null with the reason.

Servers without structured output answer in many shapes: bare JSON, JSON in a
Markdown fence, JSON after a sentence, a reply cut off by ``max_tokens``,
``"score": "8/10"``. We read them all, but we never guess: a reply without a
readable score is ``unparseable``; a score outside [0, 1] is ``out_of_range``
unless the reply states its own scale (``"scale": "0-10"``, ``"max_score":
100``, ``"8/10"``, ``"80%"``), in which case it is rescaled to [0, 1].
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .schema import OK, OUT_OF_RANGE, UNPARSEABLE

MAX_REASONING_CHARS = 2000

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
# Last resort for a reply that is JSON-ish but not JSON (e.g. cut off after the score).
_LOOSE_SCORE = re.compile(
    r"""["']?score["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)(\s*%|\s*/\s*\d+(?:\.\d+)?)?""", re.I
)
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|–|to|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$", re.I)
_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_PERCENT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*%\s*$")
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")
_SCALE_MAX_KEYS = ("max_score", "out_of", "scale_max", "max", "maximum")
_REASONING_KEYS = ("reasoning", "reason", "explanation", "rationale")


@dataclass(frozen=True)
class ParsedScore:
    status: str
    score: float | None = None
    raw_score: float | None = None  # the number as the reply gave it
    reasoning: str | None = None
    detail: str | None = None  # why it is not ok

    @property
    def ok(self) -> bool:
        return self.status == OK


def _json_objects(text: str):
    """Every JSON object embedded in ``text``, outermost first, in order."""
    decoder = json.JSONDecoder()
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            yield value
        position = text.find("{", end)


def extract_json_object(text: str) -> dict | None:
    """The reply's JSON object with a ``score`` key (or its first object)."""
    candidates = [text.strip()]
    candidates += [match.group(1) for match in _FENCE.finditer(text)]
    first: dict | None = None
    for candidate in candidates:
        for obj in _json_objects(candidate):
            if "score" in _lower_keys(obj):
                return obj
            if first is None:
                first = obj
    return first


def _lower_keys(obj: dict) -> dict:
    return {str(key).strip().lower(): value for key, value in obj.items()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return None


def _scale_of(obj: dict) -> tuple[float, float] | None:
    """(low, high) stated by the reply, if any."""
    scale = obj.get("scale")
    if isinstance(scale, str):
        match = _RANGE.match(scale)
        if match:
            return float(match.group(1)), float(match.group(2))
        if _NUMBER.match(scale):
            return 0.0, float(scale)
    elif isinstance(scale, (list, tuple)) and len(scale) == 2:
        low, high = _number(scale[0]), _number(scale[1])
        if low is not None and high is not None:
            return low, high
    elif isinstance(scale, dict):
        low = _number(scale.get("min", scale.get("low", 0)))
        high = _number(scale.get("max", scale.get("high")))
        if low is not None and high is not None:
            return low, high
    else:
        high = _number(scale)
        if high is not None:
            return 0.0, high
    for key in _SCALE_MAX_KEYS:
        high = _number(obj.get(key))
        if high is not None:
            return 0.0, high
    return None


def _score_and_scale(value: Any) -> tuple[float | None, tuple[float, float] | None]:
    """The number in a score field, and a scale the field itself states ("8/10", "80%")."""
    if isinstance(value, str):
        fraction = _FRACTION.match(value)
        if fraction:
            return float(fraction.group(1)), (0.0, float(fraction.group(2)))
        percent = _PERCENT.match(value)
        if percent:
            return float(percent.group(1)), (0.0, 100.0)
    return _number(value), None


def _reasoning(obj: dict) -> str | None:
    for key in _REASONING_KEYS:
        value = obj.get(key)
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            return text[:MAX_REASONING_CHARS]
    return None


def score_from_value(raw: float, scale: tuple[float, float] | None, reasoning: str | None = None) -> ParsedScore:
    """Validate (and, with a stated scale, rescale) a raw score."""
    if math.isnan(raw) or math.isinf(raw):
        return ParsedScore(OUT_OF_RANGE, None, None, reasoning, f"score {raw} is not a finite number")
    if scale is not None:
        low, high = scale
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            return ParsedScore(OUT_OF_RANGE, None, raw, reasoning, f"stated scale {low:g}-{high:g} is not a range")
        if not low <= raw <= high:
            return ParsedScore(OUT_OF_RANGE, None, raw, reasoning, f"score {raw:g} outside its stated scale {low:g}-{high:g}")
        return ParsedScore(OK, (raw - low) / (high - low), raw, reasoning)
    if not 0.0 <= raw <= 1.0:
        return ParsedScore(OUT_OF_RANGE, None, raw, reasoning, f"score {raw:g} outside [0, 1] and no scale stated")
    return ParsedScore(OK, raw, raw, reasoning)


def parse_judge_reply(content: str | None) -> ParsedScore:
    """Parse a reply expected as ``{"score": 0.0-1.0, "reasoning": "..."}``."""
    if content is None or not content.strip():
        return ParsedScore(UNPARSEABLE, detail="empty reply")
    obj = extract_json_object(content)
    if obj is not None:
        lowered = _lower_keys(obj)
        reasoning = _reasoning(lowered)
        if "score" not in lowered:
            return ParsedScore(UNPARSEABLE, reasoning=reasoning, detail="JSON reply without a score")
        raw, field_scale = _score_and_scale(lowered["score"])
        if raw is None:
            return ParsedScore(
                UNPARSEABLE, reasoning=reasoning, detail=f"score is not a number: {str(lowered['score'])[:50]!r}"
            )
        return score_from_value(raw, field_scale or _scale_of(lowered), reasoning)
    match = _LOOSE_SCORE.search(content)
    if match:
        raw = float(match.group(1))
        suffix = (match.group(2) or "").strip()
        scale = None
        if suffix == "%":
            scale = (0.0, 100.0)
        elif suffix.startswith("/"):
            scale = (0.0, float(suffix[1:]))
        return score_from_value(raw, scale, None)
    return ParsedScore(UNPARSEABLE, detail=f"no JSON score in reply: {content.strip()[:80]!r}")
