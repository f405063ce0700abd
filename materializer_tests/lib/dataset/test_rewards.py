"""Final reward (only from configured scorers that are all ok), input validation, feedback scales and labels."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from materializer_assets.lib.dataset.rewards import (
    LabelThresholds,
    RewardConfig,
    RewardInputError,
    RewardWeights,
    final_rewards,
    labels,
    normalize_feedback,
    reward_columns,
    unlabeled_reason_counts,
)

from .builders import table, trace


def _final(ragas, judge, feedback=None, weights=RewardWeights(), statuses=None, scorers=None, reasons=False):
    n = len(ragas)
    final, source, unlabeled = final_rewards(
        {
            "ragas": pa.array(ragas, pa.float64()),
            "judge": pa.array(judge, pa.float64()),
            "feedback": pa.array(feedback if feedback is not None else [None] * n, pa.float64()),
        },
        weights,
        n,
        statuses={name: pa.array(values, pa.string()) for name, values in (statuses or {}).items()},
        scorers=scorers,
    )
    if reasons:
        return final.to_pylist(), source.to_pylist(), unlabeled.to_pylist()
    return final.to_pylist(), source.to_pylist()


def test_default_weights_are_the_design_documents_60_40():
    final, source = _final([0.9], [0.5])
    assert final == [pytest.approx(0.6 * 0.9 + 0.4 * 0.5)]
    assert source == ["ragas+judge"]


def test_a_row_without_every_configured_scorer_gets_no_reward():
    final, source, reasons = _final([0.9, None, None, 0.2], [None, 0.5, None, None], reasons=True)
    # Never renormalized over the scorers that happen to be there: a missing score is not a smaller reward.
    assert final == [None, None, None, None] and source == [None, None, None, None]
    assert reasons == ["judge_not_scored", "ragas_not_scored", "ragas_not_scored+judge_not_scored", "judge_not_scored"]


def test_a_failed_scorer_is_not_an_unconfigured_one():
    # The case: Ragas failed, the judge said 0.9. That used to be final_reward 0.9, "preferred".
    final, source, reasons = _final(
        [None, None, None, None, 0.8],
        [0.9, 0.9, 0.9, 0.9, 0.9],
        statuses={"ragas": ["unparseable", "error", "degenerate", "not_configured", "ok"], "judge": ["ok"] * 5},
        reasons=True,
    )
    assert final == [None, None, None, None, pytest.approx(0.6 * 0.8 + 0.4 * 0.9)]
    assert source == [None, None, None, None, "ragas+judge"]
    assert reasons == ["ragas_unparseable", "ragas_error", "ragas_degenerate", "ragas_not_configured", None]
    assert labels(pa.array(final, pa.float64()), LabelThresholds()).to_pylist() == [None, None, None, None, "preferred"]


def test_a_value_counts_only_with_status_ok():
    # A scorer never writes a value with another status (its blocking check says so); if one did, it would not count.
    final, _, reasons = _final([0.5, 0.5], [0.9, 0.9], statuses={"ragas": ["ok", "ok"], "judge": ["out_of_range", "ok"]},
                               reasons=True)
    assert final == [None, pytest.approx(0.66)] and reasons == ["judge_out_of_range", None]
    final, _, reasons = _final([None], [0.9], statuses={"ragas": ["ok"], "judge": ["ok"]}, reasons=True)
    assert final == [None] and reasons == ["ragas_no_value"]


def test_only_the_configured_scorers_must_be_ok():
    statuses = {"ragas": ["error", "ok"], "judge": ["ok", "ok"]}
    final, source, reasons = _final([None, 0.1], [0.9, 0.7], statuses=statuses, scorers=("judge",), reasons=True)
    assert final == [0.9, 0.7] and source == ["judge", "judge"] and reasons == [None, None]
    final, source = _final([None, 0.1], [0.9, 0.7], statuses=statuses, weights=RewardWeights(ragas=0, judge=1))
    assert final == [0.9, 0.7] and source == ["judge", "judge"]


def test_feedback_counts_only_with_a_positive_weight():
    weights = RewardWeights(ragas=0.6, judge=0.4, feedback=0.0)
    final, source = _final([0.5], [0.5], [1.0], weights)
    assert final == [0.5] and source == ["ragas+judge"]

    weights = RewardWeights(ragas=0.5, judge=0.25, feedback=0.25)
    final, source = _final([0.4, 0.4, None], [0.8, 0.8, 0.2], [1.0, None, 1.0], weights)
    assert final[0] == pytest.approx((0.5 * 0.4 + 0.25 * 0.8 + 0.25 * 1.0) / 1.0)
    assert final[1] == pytest.approx((0.5 * 0.4 + 0.25 * 0.8) / 0.75)  # no feedback given: the scorers alone
    assert final[2] is None  # feedback never stands in for a scorer that is missing
    assert source == ["ragas+judge+feedback", "ragas+judge", None]


def test_feedback_alone_when_no_scorer_is_configured():
    weights = RewardWeights(ragas=0.0, judge=0.0, feedback=1.0)
    final, source, reasons = _final([0.9, 0.9], [None, 0.9], [0.0, None], weights, reasons=True)
    assert final == [0.0, None]  # a thumbs-down is a real 0, not "no reward"
    assert source == ["feedback", None] and reasons == [None, "no_component"]


def test_zero_weight_component_is_ignored_even_when_it_is_the_only_one():
    final, source, reasons = _final([None], [0.7], None, RewardWeights(ragas=1.0, judge=0.0), reasons=True)
    assert final == [None] and source == [None] and reasons == ["ragas_not_scored"]


def test_rounding_makes_threshold_values_exact():
    # 0.6·0.8 + 0.4·0.8 is 0.8000000000000002 in floating point without rounding.
    final, _ = _final([0.8, 0.3, 0.7], [0.8, 0.3, 0.95])
    assert final == [0.8, 0.3, 0.8]
    assert labels(pa.array(final), LabelThresholds()).to_pylist() == ["preferred", "non_preferred", "preferred"]


@pytest.mark.parametrize("bad", [1.2, -0.1, math.nan, math.inf])
def test_a_component_outside_0_1_is_an_error_never_clamped(bad):
    with pytest.raises(RewardInputError, match="judge_score outside"):
        final_rewards(
            {"ragas": pa.array([0.5, 0.5]), "judge": pa.array([0.5, bad])},
            RewardWeights(),
            2,
            trace_ids=pa.array(["t-ok", "t-bad"]),
        )


def test_the_error_names_the_trace():
    with pytest.raises(RewardInputError, match="t-bad"):
        final_rewards({"ragas": pa.array([0.5, 3.0])}, RewardWeights(), 2, trace_ids=pa.array(["t-ok", "t-bad"]))


def test_out_of_range_is_an_error_even_for_a_zero_weight_component():
    with pytest.raises(RewardInputError):
        final_rewards({"ragas": pa.array([0.5]), "judge": pa.array([7.0])}, RewardWeights(ragas=1, judge=0), 1)


@pytest.mark.parametrize(
    "kwargs",
    [dict(ragas=-0.1), dict(judge=math.nan), dict(ragas=0, judge=0, feedback=0), dict(feedback=math.inf)],
)
def test_invalid_weights_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RewardWeights(**kwargs)


def test_labels_at_and_around_the_thresholds():
    values = pa.array([1.0, 0.8, 0.799999, 0.5, 0.300001, 0.3, 0.0, None])
    assert labels(values, LabelThresholds()).to_pylist() == [
        "preferred",
        "preferred",
        "neutral",
        "neutral",
        "neutral",
        "non_preferred",
        "non_preferred",
        None,
    ]


def test_label_thresholds_are_configurable_and_validated():
    assert labels(pa.array([0.7, 0.4, 0.39]), LabelThresholds(preferred=0.7, non_preferred=0.4)).to_pylist() == [
        "preferred",
        "non_preferred",
        "non_preferred",
    ]
    with pytest.raises(ValueError):
        LabelThresholds(preferred=0.3, non_preferred=0.8)
    with pytest.raises(ValueError):
        LabelThresholds(preferred=1.2)


def _feedback(values, scale):
    reward, status = normalize_feedback(pa.array(values, pa.float64()), scale)
    return reward.to_pylist(), status.to_pylist()


def test_feedback_auto_scale_rules():
    values = [None, 0.0, 1.0, 0.25, -1.0, -0.5, 4.5, 2.0, 7.0, 55.0, 150.0, -3.0, math.nan, math.inf]
    reward, status = _feedback(values, "auto")
    assert reward == [None, 0.0, 1.0, 0.25, 0.0, 0.25, 0.875, 0.25, 0.7, 0.55, None, None, None, None]
    assert status == [None, "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "out_of_scale", "out_of_scale", "not_finite", "not_finite"]


@pytest.mark.parametrize(
    "scale, values, expected",
    [
        ("0-1", [0.0, 1.0, 0.5, 1.5], [0.0, 1.0, 0.5, None]),
        ("1-5", [1.0, 5.0, 3.0, 0.0], [0.0, 1.0, 0.5, None]),  # 1 star is the worst, not thumbs-up
        ("0-10", [0.0, 10.0, 7.5, 11.0], [0.0, 1.0, 0.75, None]),
        ("0-100", [0.0, 100.0, 55.0, 101.0], [0.0, 1.0, 0.55, None]),
        ("-1-1", [-1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 0.5, None]),  # 0 is neutral on a ±1 scale
    ],
)
def test_feedback_explicit_scales(scale, values, expected):
    reward, status = _feedback(values, scale)
    assert reward == expected
    assert status == ["ok", "ok", "ok", "out_of_scale"]


def test_unknown_feedback_scale_is_rejected():
    with pytest.raises(ValueError):
        RewardConfig(feedback_scale="1-7")
    with pytest.raises(ValueError):
        normalize_feedback(pa.array([1.0]), "stars")


def test_reward_columns_on_normalized_rows_with_feedback_from_metadata():
    rows = [
        trace("t-1", feedback=4.5),
        trace("t-2", feedback=None),
        trace("t-3", feedback=500.0),
    ]
    t = table(rows, ragas=[0.9, None, None], judge=[0.8, None, None])
    config = RewardConfig(weights=RewardWeights(ragas=0.6, judge=0.4, feedback=0.5))
    out = reward_columns(t, config)
    assert out["feedback_reward"].to_pylist() == [0.875, None, None]
    assert out["feedback_status"].to_pylist() == ["ok", None, "out_of_scale"]
    assert out["final_reward"].to_pylist() == [pytest.approx((0.6 * 0.9 + 0.4 * 0.8 + 0.5 * 0.875) / 1.5), None, None]
    assert out["reward_source"].to_pylist() == ["ragas+judge+feedback", None, None]
    assert out["label"].to_pylist() == ["preferred", None, None]
    neither = "ragas_not_scored+judge_not_scored"
    assert out["unlabeled_reason"].to_pylist() == [None, neither, neither]


def test_reward_columns_read_the_scorers_status_columns():
    t = table([trace("t-1"), trace("t-2"), trace("t-3")], ragas=[None, 0.7, None], judge=[0.9, 0.9, None])
    t = t.append_column("ragas_status", pa.array(["unparseable", "ok", None]))
    t = t.append_column("judge_status", pa.array(["ok", "ok", "error"]))
    out = reward_columns(t, RewardConfig())
    assert out["final_reward"].to_pylist() == [None, pytest.approx(0.6 * 0.7 + 0.4 * 0.9), None]
    assert out["label"].to_pylist() == [None, "neutral", None]
    assert out["unlabeled_reason"].to_pylist() == ["ragas_unparseable", None, "ragas_not_scored+judge_error"]
    # Ragas switched off explicitly: the judge alone labels, and says so.
    out = reward_columns(t, RewardConfig(use_ragas=False))
    assert out["final_reward"].to_pylist() == [0.9, 0.9, None]
    assert out["label"].to_pylist() == ["preferred", "preferred", None]
    assert out["reward_source"].to_pylist() == ["judge", "judge", None]
    assert out["unlabeled_reason"].to_pylist() == [None, None, "judge_error"]


def test_reward_columns_without_any_score_columns_are_all_unlabeled():
    out = reward_columns(table([trace("t-1"), trace("t-2")]), RewardConfig())
    assert out["final_reward"].null_count == 2
    assert out["label"].to_pylist() == [None, None]


def test_reward_spec_is_stable_json():
    spec = RewardConfig().spec()
    assert spec == RewardConfig().spec()
    assert '"weights":{"feedback":0.0,"judge":0.4,"ragas":0.6}' in spec
    assert '"scorers":["ragas","judge"]' in spec
    assert '"scorers":["judge"]' in RewardConfig(use_ragas=False).spec()


def test_scorers_are_those_switched_on_and_weighted():
    assert RewardConfig().scorers == ("ragas", "judge") and RewardConfig().scorers_left_out() == {}
    off = RewardConfig(use_ragas=False)
    assert off.scorers == ("judge",) and off.scorers_left_out() == {"ragas": "switched_off"}
    unweighted = RewardConfig(weights=RewardWeights(ragas=0.0, judge=1.0))
    assert unweighted.scorers == ("judge",) and unweighted.scorers_left_out() == {"ragas": "weight_0"}
    with pytest.raises(ValueError, match="no reward component is left"):
        RewardConfig(use_ragas=False, use_judge=False)
    with pytest.raises(ValueError, match="no reward component is left"):
        RewardConfig(weights=RewardWeights(ragas=1.0, judge=0.0), use_ragas=False)
    assert RewardConfig(weights=RewardWeights(ragas=1, judge=1, feedback=1), use_ragas=False, use_judge=False).scorers == ()


def test_unlabeled_reasons_are_counted_per_reason():
    counts = unlabeled_reason_counts(pa.array([None, "ragas_error", "ragas_error+judge_unparseable", "no_component"]))
    assert counts == {"ragas_error": 2, "judge_unparseable": 1, "no_component": 1}


def test_weights_parse_from_a_setting_string():
    assert RewardWeights.parse("ragas=0.5, judge=0.3, feedback=0.2") == RewardWeights(0.5, 0.3, 0.2)
    assert RewardWeights.parse("judge=1") == RewardWeights(ragas=0.0, judge=1.0, feedback=0.0)
    for bad in ("ragas=x", "bleu=1", "ragas", "ragas=0,judge=0"):
        with pytest.raises(ValueError):
            RewardWeights.parse(bad)


def _reasons_row_by_row(ragas, judge, feedback, weights, statuses, scorers):
    """The reason and source rule, one row at a time: what final_rewards computes over arrays."""
    from materializer_assets.lib.dataset.rewards import NO_COMPONENT, NO_VALUE, NOT_SCORED, REASON_SEPARATOR, SCORE_OK

    values = {"ragas": ragas, "judge": judge}
    sources, reasons = [], []
    for i in range(len(ragas)):
        parts, blocked, denominator = [], False, 0.0
        for name in scorers:
            given = statuses.get(name)
            status = given[i] if given is not None else (SCORE_OK if values[name][i] is not None else None)
            if status == SCORE_OK and values[name][i] is not None:
                denominator += getattr(weights, name)
                continue
            blocked = True
            parts.append(f"{name}_{NO_VALUE if status == SCORE_OK else (status or NOT_SCORED)}")
        feedback_used = feedback[i] is not None and weights.feedback > 0 and not blocked
        denominator += weights.feedback if feedback_used else 0.0
        present = not blocked and denominator > 0
        if not blocked and not present:
            parts.append(NO_COMPONENT)
        sources.append(REASON_SEPARATOR.join([*scorers, *(["feedback"] if feedback_used else [])]) if present else None)
        reasons.append(REASON_SEPARATOR.join(parts) if parts else None)
    return sources, reasons


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sources_and_unlabeled_reasons_follow_the_rule_on_every_row(seed):
    import random

    rng = random.Random(seed)
    n = 400
    pick = lambda: None if rng.random() < 0.3 else round(rng.random(), 3)  # noqa: E731
    ragas, judge, feedback = [pick() for _ in range(n)], [pick() for _ in range(n)], [pick() for _ in range(n)]
    status_values = ["ok", "ok", "ok", "error", "timeout", "not_configured", "", None]
    for weights, scorers in [
        (RewardWeights(), None),
        (RewardWeights(ragas=1, judge=0, feedback=0.5), None),
        (RewardWeights(ragas=0, judge=0, feedback=1), None),
        (RewardWeights(), ("judge", "ragas")),
    ]:
        statuses = {name: [rng.choice(status_values) for _ in range(n)] for name in ("ragas", "judge") if rng.random() < 0.7}
        used = scorers or tuple(name for name in ("ragas", "judge") if getattr(weights, name) > 0)
        _, source, unlabeled = _final(ragas, judge, feedback, weights, statuses, scorers, reasons=True)
        assert (source, unlabeled) == _reasons_row_by_row(ragas, judge, feedback, weights, statuses, used)
