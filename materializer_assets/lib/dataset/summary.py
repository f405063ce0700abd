"""Asset metadata for a reward cell: reward histogram and rows per label × split.

:class:`RewardSummary` is fed batch by batch (constant memory: counts only)
and returns plain values and Markdown strings the Dagster layer can wrap in
``MetadataValue.md`` / ``MetadataValue.json``.

Counts only, never row contents: Dagster's event log cannot be erased
(DESIGN §10), so no prompt, response or user id may end up in metadata.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
import pyarrow as pa

from .rewards import LABELS, unlabeled_reason_counts
from .schema import EXCLUDED, TEST, TRAIN

UNLABELED = "unlabeled"


def reward_histogram(values: pa.Array | pa.ChunkedArray | Iterable[float | None], bins: int = 10) -> dict:
    """Counts of rewards in ``bins`` equal bins over [0, 1] (the last bin includes 1.0).

    Returns ``{"edges": [...bins+1 floats], "counts": [...bins ints], "null": n}``;
    values outside [0, 1] are counted in ``"out_of_range"``.
    """
    if bins < 1:
        raise ValueError("bins must be positive")
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pylist()
    numbers = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    null = int(np.isnan(numbers).sum())
    finite = numbers[~np.isnan(numbers)]
    inside = finite[(finite >= 0.0) & (finite <= 1.0)]
    # Rounding first keeps 0.3 in bin 3 despite 0.3·10 = 3.0000000000000004 and the like.
    index = np.minimum(np.floor(np.round(inside * bins, 9)).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    return {
        "edges": [round(i / bins, 6) for i in range(bins + 1)],
        "counts": [int(c) for c in counts],
        "null": null,
        "out_of_range": int(len(finite) - len(inside)),
    }


def histogram_markdown(histogram: dict) -> str:
    edges, counts = histogram["edges"], histogram["counts"]
    peak = max(counts) if counts and max(counts) > 0 else 1
    lines = ["| final_reward | rows | |", "|---|---:|---|"]
    for i, count in enumerate(counts):
        closing = "]" if i == len(counts) - 1 else ")"
        bar = "█" * round(20 * count / peak)
        lines.append(f"| [{edges[i]:.1f}, {edges[i + 1]:.1f}{closing} | {count} | {bar} |")
    lines.append(f"| null | {histogram['null']} | |")
    return "\n".join(lines)


class RewardSummary:
    """Streaming summary of ``reward_dataset`` batches."""

    def __init__(self, bins: int = 10) -> None:
        self.bins = bins
        self.rows = 0
        self._histogram = {"counts": [0] * bins, "null": 0, "out_of_range": 0}
        self._label_split: Counter = Counter()
        self._unlabeled_reasons: Counter = Counter()

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        part = reward_histogram(batch.column("final_reward"), self.bins)
        self._histogram["counts"] = [a + b for a, b in zip(self._histogram["counts"], part["counts"])]
        self._histogram["null"] += part["null"]
        self._histogram["out_of_range"] += part["out_of_range"]
        self._histogram["edges"] = part["edges"]
        labels = batch.column("label").to_pylist()
        splits = batch.column("split").to_pylist()
        self._label_split.update(zip((label or UNLABELED for label in labels), splits))
        if "unlabeled_reason" in batch.schema.names:
            self._unlabeled_reasons.update(unlabeled_reason_counts(batch.column("unlabeled_reason")))

    def histogram(self) -> dict:
        return {"edges": [round(i / self.bins, 6) for i in range(self.bins + 1)], **self._histogram}

    def label_split_counts(self) -> dict[str, dict[str, int]]:
        """``{label: {split: rows}}`` for every label (and ``unlabeled``) × train/test/excluded."""
        return {
            label: {split: self._label_split.get((label, split), 0) for split in (TRAIN, TEST, EXCLUDED)}
            for label in (*LABELS, UNLABELED)
        }

    def label_split_markdown(self) -> str:
        counts = self.label_split_counts()
        lines = ["| label | train | test | excluded |", "|---|---:|---:|---:|"]
        for label, by_split in counts.items():
            lines.append(f"| {label} | {by_split[TRAIN]} | {by_split[TEST]} | {by_split[EXCLUDED]} |")
        return "\n".join(lines)

    def as_metadata(self) -> dict:
        """Plain values (``rows``, ``rows_by_label_and_split``, ``rows_unlabeled_by_reason``,
        ``reward_histogram``) and Markdown strings (``*_md``) for the asset's metadata.

        ``rows_unlabeled_by_reason`` counts rows per reason (``ragas_error``,
        ``judge_not_scored``, …); a row with two failed scorers counts under both.
        """
        histogram = self.histogram()
        return {
            "rows": self.rows,
            "rows_unlabeled": sum(n for (label, _), n in self._label_split.items() if label == UNLABELED),
            "rows_unlabeled_by_reason": dict(sorted(self._unlabeled_reasons.items())),
            "rows_by_label_and_split": self.label_split_counts(),
            "reward_histogram": histogram,
            "rows_by_label_and_split_md": self.label_split_markdown(),
            "reward_histogram_md": histogram_markdown(histogram),
        }
