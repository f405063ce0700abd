"""Committee aggregation, quorum, disagreement and Krippendorff's alpha."""

import random

import pytest

from materializer_assets.lib.scoring.committee import AlphaAccumulator, aggregate, krippendorff_alpha_interval
from materializer_assets.lib.scoring.schema import ERROR, NO_QUORUM, NOT_CONFIGURED, OK, OUT_OF_RANGE, UNPARSEABLE


def test_mean_and_median_of_the_ok_scores():
    votes = [(0.2, OK), (0.9, OK), (0.4, OK), (None, ERROR)]
    assert aggregate(votes, "mean", quorum=2).score == pytest.approx(0.5)
    median = aggregate(votes, "median", quorum=2)
    assert median.status == OK and median.score == pytest.approx(0.4)
    assert median.n_ok == 3
    assert median.disagreement == pytest.approx(0.7)


def test_a_single_judge_is_its_own_verdict():
    assert aggregate([(0.3, OK)], "median", 1).score == pytest.approx(0.3)
    assert aggregate([(0.3, OK)], "median", 1).disagreement is None
    verdict = aggregate([(None, UNPARSEABLE)], "median", 1)
    assert verdict.status == UNPARSEABLE and verdict.score is None


def test_below_quorum_is_null_with_no_quorum():
    verdict = aggregate([(0.8, OK), (None, ERROR), (None, UNPARSEABLE)], "mean", quorum=2)
    assert verdict.status == NO_QUORUM
    assert verdict.score is None
    assert verdict.n_ok == 1


def test_no_judge_ok_gives_the_most_serious_status():
    assert aggregate([(None, OUT_OF_RANGE), (None, ERROR)], "mean", 1).status == ERROR
    assert aggregate([(None, OUT_OF_RANGE), (None, UNPARSEABLE)], "mean", 1).status == UNPARSEABLE
    assert aggregate([], "mean", 1).status == NOT_CONFIGURED


def test_unknown_aggregate_is_refused():
    with pytest.raises(ValueError):
        aggregate([(0.1, OK)], "max", 1)


def test_alpha_is_one_for_perfect_agreement_and_undefined_without_variation():
    assert krippendorff_alpha_interval([[0.1, 0.5, 0.9], [0.1, 0.5, 0.9]]) == pytest.approx(1.0)
    assert krippendorff_alpha_interval([[0.5, 0.5], [0.5, 0.5]]) is None
    assert krippendorff_alpha_interval([[0.5, None], [None, 0.7]]) is None  # nothing pairable


def test_alpha_by_hand():
    # Two coders, three units: values (0,0), (0,1), (1,1).
    # Pairable values n = 6; D_o = (1/6)·(0 + 2·1 + 0) = 1/3;
    # D_e = Σ_{i≠j}(v_i−v_j)² / (n(n−1)) = 2·(3·3) / 30 = 0.6; alpha = 1 − (1/3)/0.6 = 4/9.
    assert krippendorff_alpha_interval([[0, 0, 1], [0, 1, 1]]) == pytest.approx(4 / 9)


def test_alpha_matches_the_krippendorff_package_with_missing_values():
    krippendorff = pytest.importorskip("krippendorff")
    np = pytest.importorskip("numpy")
    rng = random.Random(7)
    compared = 0
    for _ in range(20):
        coders, units = rng.randint(2, 5), rng.randint(3, 40)
        truth = [rng.random() for _ in range(units)]
        matrix = [
            [None if rng.random() < 0.2 else min(1.0, max(0.0, t + rng.gauss(0, rng.choice([0.05, 0.3])))) for t in truth]
            for _ in range(coders)
        ]
        ours = krippendorff_alpha_interval(matrix)
        data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
        try:
            theirs = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
        except (ValueError, ZeroDivisionError):
            continue
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
        compared += 1
    assert compared >= 15


def test_streaming_accumulation_equals_the_batch_formula():
    rng = random.Random(3)
    matrix = [[rng.random() for _ in range(100)] for _ in range(3)]
    accumulator = AlphaAccumulator()
    for unit in zip(*matrix):
        accumulator.add(unit)
    assert accumulator.alpha() == pytest.approx(krippendorff_alpha_interval(matrix))
    assert accumulator.units == 100
