"""A judge committee (the teacher committee of our seeds): aggregate, quorum, agreement.

Per trace, the judges' ``ok`` scores are aggregated (mean or median) when at
least ``quorum`` of them answered; the spread (max − min) records how much
they disagreed. Across the cell, Krippendorff's alpha (interval metric)
measures agreement: 1 = perfect, 0 = no better than chance, < 0 = systematic
disagreement. It is accumulated trace by trace in O(1) memory, so a
million-row cell costs nothing extra.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .schema import NO_QUORUM, NOT_CONFIGURED, OK, STATUS_PRECEDENCE

AGGREGATES = ("mean", "median")


@dataclass(frozen=True)
class Verdict:
    status: str
    score: float | None
    n_ok: int
    disagreement: float | None


def aggregate(scores_and_statuses: Sequence[tuple[float | None, str]], method: str = "median", quorum: int = 1) -> Verdict:
    """One verdict from the judges' (score, status) pairs.

    Quorum met: ``ok`` with the mean/median of the ok scores. No judge ok:
    the most serious of their statuses (all ``not_configured`` stays
    ``not_configured``). Some ok but fewer than ``quorum``: ``no_quorum``.
    """
    if method not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, not {method!r}")
    scores = [score for score, status in scores_and_statuses if status == OK and score is not None]
    disagreement = (max(scores) - min(scores)) if len(scores) >= 2 else None
    if not scores_and_statuses:
        return Verdict(NOT_CONFIGURED, None, 0, None)
    if scores and len(scores) >= max(1, quorum):
        value = statistics.fmean(scores) if method == "mean" else statistics.median(scores)
        return Verdict(OK, float(value), len(scores), disagreement)
    if scores:
        return Verdict(NO_QUORUM, None, len(scores), disagreement)
    statuses = Counter(status for _, status in scores_and_statuses)
    worst = next(status for status in STATUS_PRECEDENCE if status in statuses)
    return Verdict(worst, None, 0, None)


class AlphaAccumulator:
    """Krippendorff's alpha, interval metric, over units (traces) × coders (judges).

    With ``n`` pairable values (values in units that have at least two),
    ``D_o = (1/n) Σ_u Σ_{i≠j in u} (v_i − v_j)² / (m_u − 1)`` and
    ``D_e = Σ_{i≠j over all pairable values} (v_i − v_j)² / (n (n − 1))``;
    ``alpha = 1 − D_o / D_e``. Both sums reduce to running totals because
    ``Σ_{i≠j} (v_i − v_j)² = 2 (m Σ v² − (Σ v)²)``.
    """

    def __init__(self) -> None:
        self.units = 0
        self.n = 0
        self.sum = 0.0
        self.sum_squares = 0.0
        self.observed = 0.0

    def add(self, values: Sequence[float | None]) -> None:
        present = [float(v) for v in values if v is not None and not math.isnan(v)]
        m = len(present)
        if m < 2:
            return  # a unit with one value has nothing to agree with
        unit_sum = sum(present)
        unit_squares = sum(v * v for v in present)
        self.units += 1
        self.n += m
        self.sum += unit_sum
        self.sum_squares += unit_squares
        self.observed += 2 * (m * unit_squares - unit_sum * unit_sum) / (m - 1)

    def alpha(self) -> float | None:
        """None when undefined: fewer than two pairable values, or no variation at all."""
        if self.n < 2:
            return None
        expected_total = 2 * (self.n * self.sum_squares - self.sum * self.sum)
        if expected_total <= 1e-12:
            return None
        d_observed = self.observed / self.n
        d_expected = expected_total / (self.n * (self.n - 1))
        return 1.0 - d_observed / d_expected


def krippendorff_alpha_interval(reliability: Sequence[Sequence[float | None]]) -> float | None:
    """Alpha of a coders × units matrix (None = missing), as the ``krippendorff`` package lays it out."""
    accumulator = AlphaAccumulator()
    if not reliability:
        return None
    for unit in zip(*reliability):
        accumulator.add(unit)
    return accumulator.alpha()
