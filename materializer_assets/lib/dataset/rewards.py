"""Final reward, user-feedback normalization and preference labels.

``final_reward`` is the weighted mean of the reward components a row has:

    final = Σ wᵢ·xᵢ / Σ wᵢ   over components i with xᵢ present (non-null) and wᵢ > 0

so a row with only a judge score gets ``final = judge_score`` and a row with
no component gets null (never 0). Defaults follow our design document:
``0.6·ragas_reward + 0.4·judge_score``; user feedback has weight 0 unless
configured. ``reward_source`` names the components used, in the fixed order
``ragas+judge+feedback``.

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
from typing import Mapping

import numpy as np
import pyarrow as pa

PREFERRED = "preferred"
NON_PREFERRED = "non_preferred"
NEUTRAL = "neutral"
LABELS = (PREFERRED, NEUTRAL, NON_PREFERRED)

COMPONENTS = ("ragas", "judge", "feedback")
# The input column of each component.
COMPONENT_COLUMNS = {"ragas": "ragas_reward", "judge": "judge_score", "feedback": "feedback_reward"}

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

    def __post_init__(self) -> None:
        if self.feedback_scale not in FEEDBACK_SCALES:
            raise ValueError(f"feedback scale must be one of {sorted(FEEDBACK_SCALES)}, got {self.feedback_scale!r}")

    def spec(self) -> str:
        """A compact, stable description stored on every row (lineage)."""
        return json.dumps(
            {
                "weights": self.weights.as_dict(),
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


def final_rewards(
    components: Mapping[str, pa.Array | pa.ChunkedArray | None],
    weights: RewardWeights,
    num_rows: int,
    trace_ids: pa.Array | pa.ChunkedArray | None = None,
) -> tuple[pa.Array, pa.Array]:
    """``(final_reward, reward_source)`` from ``{"ragas": …, "judge": …, "feedback": …}``.

    A missing (None) component counts as null on every row. Components are
    validated first (:class:`RewardInputError`).
    """
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown reward components: {sorted(unknown)}")
    numerator = np.zeros(num_rows)
    denominator = np.zeros(num_rows)
    used: list[tuple[str, np.ndarray]] = []
    for name in COMPONENTS:
        values = components.get(name)
        if values is None:
            continue
        if len(values) != num_rows:
            raise ValueError(f"component {name!r} has {len(values)} values for {num_rows} rows")
        validate_component(values, COMPONENT_COLUMNS[name], trace_ids)
        weight = float(getattr(weights, name))
        if weight <= 0:
            continue
        numbers, valid = _as_numpy(values)
        numerator += np.where(valid, weight * np.nan_to_num(numbers), 0.0)
        denominator += np.where(valid, weight, 0.0)
        used.append((name, valid))
    present = denominator > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        final = np.where(present, numerator / np.where(present, denominator, 1.0), np.nan)
    # Only rounding noise can leave [0, 1] here; inputs were validated above.
    final = np.clip(np.round(final, ROUND_DECIMALS), 0.0, 1.0)
    sources = ["+".join(name for name, valid in used if valid[i]) or None for i in range(num_rows)]
    return _to_arrow(final, present), pa.array(sources, pa.string())


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

    Reads ``ragas_reward``, ``judge_score`` and ``feedback_score`` where present
    (absent = null); returns ``feedback_reward``, ``feedback_status``,
    ``final_reward``, ``reward_source`` and ``label``.
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
    final, source = final_rewards(components, config.weights, n, trace_ids)
    return {
        "feedback_reward": feedback_reward,
        "feedback_status": feedback_status,
        "final_reward": final,
        "reward_source": source,
        "label": labels(final, config.thresholds),
    }
