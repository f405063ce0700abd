"""Final reward, user-feedback normalization and preference labels.

A row gets a ``final_reward`` (and so a label) only when **every configured
scorer is ok for it**. The configured scorers are those switched on
(``use_ragas`` / ``use_judge``, default on) with a positive weight; a scorer
whose row status is anything but ``ok`` — ``error``, ``unparseable``,
``out_of_range``, ``degenerate``, ``not_configured`` (no endpoint), not scored
at all … — leaves the row without reward and label, and the reason is kept in
``unlabeled_reason`` (``ragas_error``, ``judge_unparseable``, …; several joined
by ``+``). A failed scorer is never read as "not configured": to label
without a scorer, switch it off (or give it weight 0), and ``reward_source``
says which components counted.

For a row whose configured scorers are all ok, ``final_reward`` is the
weighted mean of its components:

    final = Σ wᵢ·xᵢ / Σ wᵢ   over the configured scorers, plus user feedback where present

Defaults follow our design document: ``0.6·ragas_reward + 0.4·judge_score``;
user feedback has weight 0 unless configured, and only counts where the row
has usable feedback (a row without feedback is scored by the scorers alone).
When no scorer is configured, feedback alone is the reward and a row without
it is unlabeled (``no_component``). ``reward_source`` names the components
used, in the fixed order ``ragas+judge+feedback``.

Inputs are validated, never repaired: a component outside [0, 1] (or NaN) is a
:class:`RewardInputError` naming the column and a trace, because a score on
the wrong scale would silently skew every label. The result is rounded to
9 decimals, so ``0.6·0.8 + 0.4·0.8`` is exactly 0.8 and labels at a threshold
do not depend on floating-point noise.

Labels (our design document): ``preferred`` when final ≥ 0.8,
``non_preferred`` when final ≤ 0.3, ``neutral`` between, null (unlabeled)
when final is null. Thresholds are configurable.

User feedback (``feedback_score``: a Langfuse user score or the metadata key
``feedback_score``) is mapped to [0, 1] by a scale ``lo..hi`` as
``(v − lo) / (hi − lo)``; a value outside the scale becomes null with
``feedback_status = "out_of_scale"`` (NaN/inf: ``"not_finite"``), never
clamped. Scales: ``0-1`` (thumbs 0/1, fractions), ``1-5`` (stars),
``0-10``, ``0-100``, ``-1-1`` (thumbs −1/+1), and ``auto``, which reads each
value on its own (no other row can change a row's reward):

    v in [0, 1]    → 0-1        (Langfuse's thumbs convention: 1 up, 0 down)
    v in [-1, 0)   → -1-1       (only a ±1 scale has negatives)
    v in (1, 5]    → 1-5 stars  (4.5 → 0.875)
    v in (5, 10]   → 0-10
    v in (10, 100] → 0-100
    otherwise      → null, "out_of_scale"

``auto`` cannot tell a 1-star rating from a thumbs-up (both are 1 → 1.0), nor a
0 on a ±1 scale (neutral) from a thumbs-down: configure the scale explicitly
when the application's convention is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PREFERRED = "preferred"
NON_PREFERRED = "non_preferred"
NEUTRAL = "neutral"
LABELS = (PREFERRED, NEUTRAL, NON_PREFERRED)

COMPONENTS = ("ragas", "judge", "feedback")
# The components that are scorers: a label needs each configured one to be ok for the row.
SCORERS = ("ragas", "judge")
# The input column of each component, and the status column of each scorer.
COMPONENT_COLUMNS = {"ragas": "ragas_reward", "judge": "judge_score", "feedback": "feedback_reward"}
STATUS_COLUMNS = {"ragas": "ragas_status", "judge": "judge_status"}
SCORE_OK = "ok"
# unlabeled_reason parts besides "<scorer>_<status>":
NOT_SCORED = "not_scored"  # the scorer has no row (and no status) for the trace
NO_VALUE = "no_value"  # status ok but no value: never written by our scorers
NO_COMPONENT = "no_component"  # no scorer configured and the row has no feedback
REASON_SEPARATOR = "+"

FEEDBACK_SCALES: dict[str, tuple[float, float] | None] = {
    "auto": None,
    "0-1": (0.0, 1.0),
    "1-5": (1.0, 5.0),
    "0-10": (0.0, 10.0),
    "0-100": (0.0, 100.0),
    "-1-1": (-1.0, 1.0),
}
FEEDBACK_OK = "ok"
FEEDBACK_OUT_OF_SCALE = "out_of_scale"
FEEDBACK_NOT_FINITE = "not_finite"

# ``auto``: (low, low inclusive, high, high inclusive, scale); the first match wins.
_AUTO_RULES = (
    (0.0, True, 1.0, True, (0.0, 1.0)),
    (-1.0, True, 0.0, False, (-1.0, 1.0)),
    (1.0, False, 5.0, True, (1.0, 5.0)),
    (5.0, False, 10.0, True, (0.0, 10.0)),
    (10.0, False, 100.0, True, (0.0, 100.0)),
)

ROUND_DECIMALS = 9


class RewardInputError(ValueError):
    """A reward component outside [0, 1] (or NaN): the scorer's scale is wrong."""


@dataclass(frozen=True)
class RewardWeights:
    ragas: float = 0.6
    judge: float = 0.4
    feedback: float = 0.0

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"reward weight {name!r} must be a finite number ≥ 0, got {value!r}")
        if not any(getattr(self, name) > 0 for name in COMPONENTS):
            raise ValueError("at least one reward weight must be positive")

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in COMPONENTS}

    @classmethod
    def parse(cls, text: str) -> "RewardWeights":
        """``"ragas=0.6,judge=0.4,feedback=0.1"`` (a setting's form); components
        not named get weight 0, so ``"judge=1"`` means the judge alone."""
        weights = dict.fromkeys(COMPONENTS, 0.0)
        for item in text.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip().lower()
            if not sep or name not in weights:
                raise ValueError(f"reward weights: expected name=value with a name in {COMPONENTS}, got {item.strip()!r}")
            try:
                weights[name] = float(value)
            except ValueError:
                raise ValueError(f"reward weights: {name} is not a number: {value.strip()!r}") from None
        return cls(**weights)


@dataclass(frozen=True)
class LabelThresholds:
    preferred: float = 0.8  # final_reward ≥ this → preferred
    non_preferred: float = 0.3  # final_reward ≤ this → non_preferred

    def __post_init__(self) -> None:
        if not 0.0 <= self.non_preferred < self.preferred <= 1.0:
            raise ValueError(
                "label thresholds need 0 ≤ non_preferred < preferred ≤ 1, "
                f"got non_preferred={self.non_preferred}, preferred={self.preferred}"
            )


@dataclass(frozen=True)
class RewardConfig:
    weights: RewardWeights = RewardWeights()
    thresholds: LabelThresholds = LabelThresholds()
    feedback_scale: str = "auto"
    # Explicit switches: a scorer switched off never counts, whatever its weight and its rows.
    use_ragas: bool = True
    use_judge: bool = True

    def __post_init__(self) -> None:
        if self.feedback_scale not in FEEDBACK_SCALES:
            raise ValueError(f"feedback scale must be one of {sorted(FEEDBACK_SCALES)}, got {self.feedback_scale!r}")
        if not self.scorers and self.weights.feedback <= 0:
            raise ValueError(
                "no reward component is left: every scorer is switched off or weighs 0, and feedback weighs 0 "
                f"(weights {self.weights.as_dict()}, use_ragas={self.use_ragas}, use_judge={self.use_judge})"
            )

    @property
    def scorers(self) -> tuple[str, ...]:
        """The configured scorers: switched on and weighted above 0. Each must be ok for a row to get a label."""
        return tuple(name for name in SCORERS if getattr(self, f"use_{name}") and getattr(self.weights, name) > 0)

    def scorers_left_out(self) -> dict[str, str]:
        """Scorers that do not count, and why (``switched_off`` or ``weight_0``)."""
        return {
            name: "switched_off" if not getattr(self, f"use_{name}") else "weight_0"
            for name in SCORERS
            if name not in self.scorers
        }

    def spec(self) -> str:
        """A compact, stable description stored on every row (lineage)."""
        return json.dumps(
            {
                "weights": self.weights.as_dict(),
                "scorers": list(self.scorers),
                "preferred_min": self.thresholds.preferred,
                "non_preferred_max": self.thresholds.non_preferred,
                "feedback_scale": self.feedback_scale,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def _as_numpy(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN where null, validity mask)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    values = values.cast(pa.float64())
    valid = values.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    numbers = values.fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    return numbers, valid


def _to_arrow(numbers: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(numbers, type=pa.float64(), mask=~valid)


def normalize_feedback(values: pa.Array | pa.ChunkedArray, scale: str = "auto") -> tuple[pa.Array, pa.Array]:
    """Feedback scores mapped to [0, 1]: ``(feedback_reward, feedback_status)``.

    Status is null where no feedback was given, ``ok`` where it was mapped,
    ``out_of_scale`` / ``not_finite`` where the value is unusable (reward null).
    """
    if scale not in FEEDBACK_SCALES:
        raise ValueError(f"feedback scale must be one of {sorted(FEEDBACK_SCALES)}, got {scale!r}")
    numbers, given = _as_numpy(values)
    finite = given & np.isfinite(numbers)
    lo = np.full(numbers.shape, np.nan)
    hi = np.full(numbers.shape, np.nan)
    fixed = FEEDBACK_SCALES[scale]
    with np.errstate(invalid="ignore"):
        if fixed is not None:
            inside = finite & (numbers >= fixed[0]) & (numbers <= fixed[1])
            lo[inside], hi[inside] = fixed
        else:
            unassigned = finite.copy()
            for low, low_inclusive, high, high_inclusive, (scale_lo, scale_hi) in _AUTO_RULES:
                above = numbers >= low if low_inclusive else numbers > low
                below = numbers <= high if high_inclusive else numbers < high
                hit = unassigned & above & below
                lo[hit], hi[hit] = scale_lo, scale_hi
                unassigned &= ~hit
        mapped = ~np.isnan(lo)
        reward = np.where(mapped, (numbers - lo) / np.where(mapped, hi - lo, 1.0), np.nan)
    status = np.full(numbers.shape, None, dtype=object)
    status[given & ~finite] = FEEDBACK_NOT_FINITE
    status[finite & ~mapped] = FEEDBACK_OUT_OF_SCALE
    status[mapped] = FEEDBACK_OK
    return _to_arrow(np.round(reward, ROUND_DECIMALS), mapped), pa.array(status.tolist(), pa.string())


def validate_component(
    values: pa.Array | pa.ChunkedArray, column: str, trace_ids: pa.Array | pa.ChunkedArray | None = None
) -> None:
    """Raise :class:`RewardInputError` if a present value is NaN or outside [0, 1]."""
    numbers, valid = _as_numpy(values)
    with np.errstate(invalid="ignore"):
        bad = valid & ~((numbers >= 0.0) & (numbers <= 1.0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        where = f" (trace_id={trace_ids[index].as_py()!r})" if trace_ids is not None else ""
        raise RewardInputError(
            f"{int(bad.sum())} value(s) of {column} outside [0, 1], e.g. {numbers[index]!r}{where}; "
            "scores are validated, never clamped"
        )


class FinalRewards(NamedTuple):
    final_reward: pa.Array  # null where a configured scorer is not ok (or nothing counted)
    reward_source: pa.Array  # the components used, e.g. "ragas+judge"; null where final_reward is
    unlabeled_reason: pa.Array  # why final_reward is null, e.g. "ragas_error+judge_not_scored"; null where it is not


def _statuses(name: str, statuses: Mapping[str, pa.Array | pa.ChunkedArray | None] | None, valid: np.ndarray) -> np.ndarray:
    """The row statuses of scorer ``name``; without a status column, a value stands for ``ok``."""
    given = (statuses or {}).get(name)
    if given is None:
        return np.where(valid, SCORE_OK, None).astype(object)
    if len(given) != len(valid):
        raise ValueError(f"status of {name!r} has {len(given)} values for {len(valid)} rows")
    return np.array(given.to_pylist(), dtype=object)


def final_rewards(
    components: Mapping[str, pa.Array | pa.ChunkedArray | None],
    weights: RewardWeights,
    num_rows: int,
    trace_ids: pa.Array | pa.ChunkedArray | None = None,
    *,
    statuses: Mapping[str, pa.Array | pa.ChunkedArray | None] | None = None,
    scorers: tuple[str, ...] | None = None,
) -> FinalRewards:
    """``(final_reward, reward_source, unlabeled_reason)`` from ``{"ragas": …, "judge": …, "feedback": …}``.

    ``scorers`` are the configured scorers (default: those weighted above 0):
    a row gets a reward only when each of them has status ``ok`` and a value
    (``statuses`` maps a scorer to its row statuses; without one, a value
    stands for ok). A missing (None) component counts as null on every row.
    Components are validated first (:class:`RewardInputError`).
    """
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown reward components: {sorted(unknown)}")
    if scorers is None:
        scorers = tuple(name for name in SCORERS if getattr(weights, name) > 0)
    if set(scorers) - set(SCORERS):
        raise ValueError(f"unknown scorers: {sorted(set(scorers) - set(SCORERS))}")
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in COMPONENTS:
        values = components.get(name)
        if values is None:
            arrays[name] = (np.full(num_rows, np.nan), np.zeros(num_rows, dtype=bool))
            continue
        if len(values) != num_rows:
            raise ValueError(f"component {name!r} has {len(values)} values for {num_rows} rows")
        validate_component(values, COMPONENT_COLUMNS[name], trace_ids)
        arrays[name] = _as_numpy(values)

    numerator = np.zeros(num_rows)
    denominator = np.zeros(num_rows)
    blocked = np.zeros(num_rows, dtype=bool)
    reasons: list[pa.Array] = []  # per scorer, then no_component: the reason of each row, null where none
    for name in scorers:
        numbers, valid = arrays[name]
        weight = float(getattr(weights, name))
        status = _statuses(name, statuses, valid)
        ok = (status == SCORE_OK) & valid
        reasons.append(_scorer_reason(name, status, ok))
        numerator += np.where(ok, weight * np.nan_to_num(numbers), 0.0)
        denominator += np.where(ok, weight, 0.0)
        blocked |= ~ok
    feedback_numbers, feedback_valid = arrays["feedback"]
    feedback_used = feedback_valid & (weights.feedback > 0) & ~blocked
    numerator += np.where(feedback_used, weights.feedback * np.nan_to_num(feedback_numbers), 0.0)
    denominator += np.where(feedback_used, weights.feedback, 0.0)

    present = ~blocked & (denominator > 0)
    reasons.append(pc.if_else(pa.array(~blocked & ~present), NO_COMPONENT, pa.scalar(None, pa.string())))
    with np.errstate(invalid="ignore", divide="ignore"):
        final = np.where(present, numerator / np.where(present, denominator, 1.0), np.nan)
    # Only rounding noise can leave [0, 1] here; inputs were validated above.
    final = np.clip(np.round(final, ROUND_DECIMALS), 0.0, 1.0)
    used = [*scorers]
    sources = np.where(
        present,
        np.where(feedback_used, REASON_SEPARATOR.join([*used, "feedback"]), REASON_SEPARATOR.join(used)),
        None,
    )
    # each row's reasons in order (scorers, then no_component), joined; null for a labeled row.
    # Not binary_join_element_wise(null_handling="skip"): pyarrow drops the rows where all are null.
    unlabeled = reasons[0]
    for reason in reasons[1:]:
        unlabeled = pc.coalesce(pc.binary_join_element_wise(unlabeled, reason, REASON_SEPARATOR), unlabeled, reason)
    return FinalRewards(_to_arrow(final, present), pa.array(sources, pa.string()), unlabeled)


def _scorer_reason(name: str, status: np.ndarray, ok: np.ndarray) -> pa.Array:
    """``{name}_{status}`` where a row is not ok: ``no_value`` for ok without a value,
    ``not_scored`` for no (or an empty) status; null where the row is ok."""
    given = pa.array(status, pa.string())
    part = pc.if_else(
        pc.fill_null(pc.equal(given, SCORE_OK), False),
        NO_VALUE,
        pc.if_else(pc.fill_null(pc.equal(given, ""), True), NOT_SCORED, given),
    )
    reason = pc.binary_join_element_wise(f"{name}_", part, "")
    return pc.if_else(pa.array(~ok), reason, pa.scalar(None, pa.string()))


def labels(final: pa.Array | pa.ChunkedArray, thresholds: LabelThresholds) -> pa.Array:
    """``preferred`` / ``neutral`` / ``non_preferred``; null where final_reward is null."""
    numbers, valid = _as_numpy(final)
    out = np.full(numbers.shape, None, dtype=object)
    with np.errstate(invalid="ignore"):
        out[valid] = NEUTRAL
        out[valid & (numbers >= thresholds.preferred)] = PREFERRED
        out[valid & (numbers <= thresholds.non_preferred)] = NON_PREFERRED
    return pa.array(out.tolist(), pa.string())


def reward_columns(batch: pa.RecordBatch | pa.Table, config: RewardConfig) -> dict[str, pa.Array]:
    """The reward columns of a batch of traces joined with their scores.

    Reads ``ragas_reward`` / ``ragas_status``, ``judge_score`` / ``judge_status``
    and ``feedback_score`` where present (absent = null; a score without a status
    column stands for ok); returns ``feedback_reward``, ``feedback_status``,
    ``final_reward``, ``reward_source``, ``label`` and ``unlabeled_reason``.
    """
    n = batch.num_rows
    names = batch.schema.names
    trace_ids = batch.column("trace_id") if "trace_id" in names else None
    if "feedback_score" in names:
        feedback_reward, feedback_status = normalize_feedback(batch.column("feedback_score"), config.feedback_scale)
    else:
        feedback_reward, feedback_status = pa.nulls(n, pa.float64()), pa.nulls(n, pa.string())
    components = {
        "ragas": batch.column("ragas_reward") if "ragas_reward" in names else None,
        "judge": batch.column("judge_score") if "judge_score" in names else None,
        "feedback": feedback_reward,
    }
    statuses = {name: batch.column(column) for name, column in STATUS_COLUMNS.items() if column in names}
    final, source, unlabeled = final_rewards(
        components, config.weights, n, trace_ids, statuses=statuses, scorers=config.scorers
    )
    return {
        "feedback_reward": feedback_reward,
        "feedback_status": feedback_status,
        "final_reward": final,
        "reward_source": source,
        "label": labels(final, config.thresholds),
        "unlabeled_reason": unlabeled,
    }


def unlabeled_reason_counts(reasons: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    """``{reason: rows}`` over ``unlabeled_reason`` values; a row with two reasons counts under both."""
    counts: dict[str, int] = {}
    for value in reasons.to_pylist():
        for part in (value or "").split(REASON_SEPARATOR):
            if part:
                counts[part] = counts.get(part, 0) + 1
    return counts
