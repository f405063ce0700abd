"""Asset metadata for a reward cell: reward histogram, rows per label × split, a preview.

:class:`RewardSummary` is fed batch by batch (constant memory: counts and the
first few rows) and returns plain values and Markdown strings the Dagster
layer can wrap in ``MetadataValue.md`` / ``MetadataValue.json``.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from .rewards import LABELS
from .schema import EXCLUDED, TEST, TRAIN

UNLABELED = "unlabeled"
PREVIEW_COLUMNS = ("trace_id", "split", "label", "final_reward", "reward_source", "prompt", "response")


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


def _escape(value: object, max_chars: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max(0, max_chars - 1)] + "…"
    return text.replace("|", "\\|")


def preview_markdown(table: pa.Table | pa.RecordBatch, rows: int = 5, max_chars: int = 60, columns: Sequence[str] = PREVIEW_COLUMNS) -> str:
    """The first ``rows`` rows as a Markdown table, each cell cut to ``max_chars``."""
    present = [name for name in columns if name in table.schema.names]
    head = table.slice(0, rows).select(present).to_pylist()
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for row in head:
        lines.append("| " + " | ".join(_escape(row[name], max_chars) for name in present) + " |")
    return "\n".join(lines)


class RewardSummary:
    """Streaming summary of ``reward_dataset`` batches."""

    def __init__(self, bins: int = 10, preview_rows: int = 5, preview_chars: int = 60) -> None:
        self.bins = bins
        self.preview_rows = preview_rows
        self.preview_chars = preview_chars
        self.rows = 0
        self._histogram = {"counts": [0] * bins, "null": 0, "out_of_range": 0}
        self._label_split: Counter = Counter()
        self._preview: list[pa.Table] = []
        self._preview_count = 0

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
        if self._preview_count < self.preview_rows:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            present = [name for name in PREVIEW_COLUMNS if name in table.column_names]
            head = table.slice(0, self.preview_rows - self._preview_count).select(present)
            self._preview.append(head)
            self._preview_count += head.num_rows

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

    def preview(self) -> str:
        if not self._preview:
            return preview_markdown(pa.table({name: pa.array([], pa.string()) for name in PREVIEW_COLUMNS}), 0)
        return preview_markdown(pa.concat_tables(self._preview), self.preview_rows, self.preview_chars)

    def as_metadata(self) -> dict:
        """Plain values (``rows``, ``rows_by_label_and_split``, ``reward_histogram``)
        and Markdown strings (``*_md``) for the asset's metadata."""
        histogram = self.histogram()
        return {
            "rows": self.rows,
            "rows_by_label_and_split": self.label_split_counts(),
            "reward_histogram": histogram,
            "rows_by_label_and_split_md": self.label_split_markdown(),
            "reward_histogram_md": histogram_markdown(histogram),
            "preview_md": self.preview(),
        }
