"""Reading judge replies: a score in [0, 1] or null with a reason, never a guess."""

import json
import math

import pytest

from materializer_assets.lib.scoring.parsing import parse_judge_reply
from materializer_assets.lib.scoring.schema import OK, OUT_OF_RANGE, UNPARSEABLE


@pytest.mark.parametrize(
    "reply, score",
    [
        ('{"score": 0.85, "reasoning": "accurate"}', 0.85),
        ('{"score": 0, "reasoning": "wrong"}', 0.0),
        ('{"score": 1, "reasoning": "perfect"}', 1.0),
        ('{"score": "0.4", "reasoning": "string number"}', 0.4),
        ('Here is my evaluation:\n```json\n{"score": 0.7, "reasoning": "ok"}\n```', 0.7),
        ('Sure! {"score": 0.6, "reasoning": "fine"} Hope this helps.', 0.6),
        ('{"Score": 0.3, "Reasoning": "keys in another case"}', 0.3),
        # cut off by max_tokens after the score: still read, the number is there
        ('{"score": 0.9, "reasoning": "The answer covers every aspect and is very', 0.9),
    ],
)
def test_readable_replies_give_their_score(reply, score):
    parsed = parse_judge_reply(reply)
    assert parsed.status == OK
    assert parsed.score == pytest.approx(score)


@pytest.mark.parametrize(
    "reply, score, raw",
    [
        ('{"score": 8, "scale": "0-10", "reasoning": "good"}', 0.8, 8),
        ('{"score": 7, "scale": "0 to 10"}', 0.7, 7),
        ('{"score": 85, "max_score": 100}', 0.85, 85),
        ('{"score": 3, "scale": "1-5"}', 0.5, 3),
        ('{"score": 6, "scale": [0, 10]}', 0.6, 6),
        ('{"score": "8/10", "reasoning": "fraction"}', 0.8, 8),
        ('{"score": "80%", "reasoning": "percent"}', 0.8, 80),
        ('{"score": 9, "out_of": 10}', 0.9, 9),
    ],
)
def test_a_stated_scale_is_rescaled(reply, score, raw):
    parsed = parse_judge_reply(reply)
    assert parsed.status == OK
    assert parsed.score == pytest.approx(score)
    assert parsed.raw_score == raw


@pytest.mark.parametrize(
    "reply, raw",
    [
        ('{"score": 1.7, "reasoning": "too high"}', 1.7),
        ('{"score": -0.2, "reasoning": "negative"}', -0.2),
        ('{"score": 8, "reasoning": "no scale stated"}', 8),  # never guessed to be 0-10
        ('{"score": 12, "scale": "0-10"}', 12),  # outside its own scale
        ('{"score": 5, "scale": "10-0"}', 5),  # a scale that is not a range
    ],
)
def test_out_of_range_scores_are_null_never_clamped(reply, raw):
    parsed = parse_judge_reply(reply)
    assert parsed.status == OUT_OF_RANGE
    assert parsed.score is None
    assert parsed.raw_score == raw
    assert parsed.detail


def test_non_finite_scores_are_out_of_range():
    parsed = parse_judge_reply(json.dumps({"score": float("nan")}))
    assert parsed.status == OUT_OF_RANGE and parsed.score is None
    parsed = parse_judge_reply('{"score": Infinity}')
    assert parsed.status == OUT_OF_RANGE and parsed.score is None


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "   ",
        "I think this answer is pretty good {score: high",
        "The score of this answer is 8",  # prose, no score field: not guessed
        '{"verdict": "good", "reasoning": "no number"}',
        '{"score": "high", "reasoning": "a word"}',
        '{"score": true}',
        '{"score": null}',
        '{"score": [0.5]}',
    ],
)
def test_unreadable_replies_are_unparseable_and_null(reply):
    parsed = parse_judge_reply(reply)
    assert parsed.status == UNPARSEABLE
    assert parsed.score is None
    assert parsed.detail


def test_reasoning_is_kept_and_bounded():
    parsed = parse_judge_reply(json.dumps({"score": 0.5, "reasoning": "x" * 5000}))
    assert parsed.status == OK
    assert len(parsed.reasoning) == 2000
    assert parse_judge_reply('{"score": 0.5, "explanation": "why"}').reasoning == "why"


def test_the_object_with_a_score_wins_over_other_json():
    reply = 'Input was {"question": "q"}. Result: {"score": 0.25, "reasoning": "r"}'
    parsed = parse_judge_reply(reply)
    assert parsed.status == OK and math.isclose(parsed.score, 0.25)
