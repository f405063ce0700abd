"""Data checks of ``reward_dataset`` and the DPO export, as pure functions.

Each takes a table, a ``pyarrow.dataset.Dataset`` or an iterable of record
batches (read batch by batch, only the columns it needs) and returns a
:class:`~materializer_assets.lib.checks.CheckOutcome` for the Dagster layer to
turn into an ``AssetCheckResult`` (the first three are blocking).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from ..checks import CONSENT_LINEAGE_COLUMNS, CheckOutcome, consent_lineage
from .chat import messages_key
from .schema import SPLITS

Source = pa.Table | pa.RecordBatch | ds.Dataset | Iterable[pa.RecordBatch]

_EXAMPLES = 5


def _batches(source: Source, columns: list[str], optional: tuple[str, ...] = ()) -> Iterator[pa.RecordBatch]:
    """Batches of ``columns`` plus whichever ``optional`` columns the source has."""
    if isinstance(source, (ds.Dataset, pa.Table, pa.RecordBatch)):
        wanted = columns + [name for name in optional if name in source.schema.names]
        if isinstance(source, ds.Dataset):
            yield from source.to_batches(columns=wanted)
        elif isinstance(source, pa.Table):
            yield from source.select(wanted).to_batches()
        else:
            yield source.select(wanted)
        return
    for batch in source:
        yield batch.select(columns + [name for name in optional if name in batch.schema.names])


def check_final_reward_range(source: Source) -> CheckOutcome:
    """final_reward is null or a finite number in [0, 1] (blocking)."""
    rows = bad = nulls = 0
    examples: list[str] = []
    for batch in _batches(source, ["trace_id", "final_reward"]):
        rows += batch.num_rows
        values = batch.column("final_reward").cast(pa.float64())
        nulls += values.null_count
        numbers = values.fill_null(0.5).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            wrong = ~((numbers >= 0.0) & (numbers <= 1.0))
        bad += int(wrong.sum())
        for index in np.flatnonzero(wrong)[: _EXAMPLES - len(examples)]:
            examples.append(f"{batch.column('trace_id')[int(index)].as_py()}={float(numbers[index])!r}")
    return CheckOutcome(
        bad == 0,
        "every final_reward is in [0, 1] or null" if bad == 0 else f"{bad} final_reward value(s) outside [0, 1]",
        {"rows": rows, "rows_out_of_range": bad, "rows_null": nulls, "examples": ", ".join(examples)},
    )


def check_no_group_in_both_splits(
    source: Source, column: str = "split_key", pseudonymize: Callable[[str], str] | None = None
) -> CheckOutcome:
    """No value of ``column`` (default: the split's group key; pass ``"user_id"`` to
    check users when grouping by session) has rows in both train and test (blocking).
    Excluded rows are not in any split. Null values are not a group.

    The metadata lists a few offending values: ``split_key`` values as they are
    (already salted hashes), any other column's only through ``pseudonymize``
    (e.g. the erasure ledger's salted user hash); without it, counts only. Raw
    user ids never reach Dagster's event log, which cannot be erased.
    """
    seen: dict[str, int] = defaultdict(int)  # bit 1 = train, bit 2 = test
    for batch in _batches(source, [column, "split"]):
        for key, split in zip(batch.column(column).to_pylist(), batch.column("split").to_pylist()):
            if key is None or split not in SPLITS:
                continue
            seen[key] |= 1 if split == SPLITS[0] else 2
    straddling = sorted(key for key, bits in seen.items() if bits == 3)
    if pseudonymize is not None:
        examples = sorted(pseudonymize(key) for key in straddling[:_EXAMPLES])
    elif column == "split_key":
        examples = straddling[:_EXAMPLES]
    else:
        examples = []
    return CheckOutcome(
        not straddling,
        f"no {column} has rows in both train and test"
        if not straddling
        else f"{len(straddling)} {column} value(s) have rows in both train and test",
        {"groups": len(seen), "groups_in_both_splits": len(straddling), "examples": ", ".join(examples)},
    )


def check_consent_lineage(source: Source) -> CheckOutcome:
    """Every row has consent = true and a recorded consent source that can grant (blocking;
    :func:`~materializer_assets.lib.checks.consent_lineage`)."""
    found = consent_lineage(_batches(source, list(CONSENT_LINEAGE_COLUMNS)))
    return CheckOutcome(
        found.passed,
        "every row has consent=true and a recorded consent source"
        if found.passed
        else f"{found.without_consent} row(s) without consent=true, "
        f"{found.without_granting_source} without a granting consent source",
        {
            "rows": found.rows,
            "rows_without_consent": found.without_consent,
            "rows_without_consent_source": found.without_granting_source,
        },
    )


def check_dpo_pairs(source: Source, min_margin: float) -> CheckOutcome:
    """chosen ≠ rejected (modulo case, whitespace and tool-call ids), margin ≥ min_margin and > 0, and
    margin = chosen_reward − rejected_reward where those columns exist."""
    rows = identical = small = inconsistent = 0
    examples: list[str] = []
    optional = ("chosen_reward", "rejected_reward", "chosen_trace_id")
    for batch in _batches(source, ["chosen", "rejected", "margin"], optional):
        rows += batch.num_rows
        data = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        has_rewards = "chosen_reward" in data and "rejected_reward" in data
        for i in range(batch.num_rows):
            margin = data["margin"][i]
            problems = []
            if messages_key(data["chosen"][i]) == messages_key(data["rejected"][i]):
                identical += 1
                problems.append("identical")
            if margin is None or not margin > 0 or round(margin, 9) < round(min_margin, 9):
                small += 1
                problems.append(f"margin={margin}")
            if has_rewards and margin is not None:
                chosen, rejected = data["chosen_reward"][i], data["rejected_reward"][i]
                if chosen is None or rejected is None or abs((chosen - rejected) - margin) > 1e-6:
                    inconsistent += 1
                    problems.append("margin≠chosen−rejected")
            if problems and len(examples) < _EXAMPLES:
                who = data["chosen_trace_id"][i] if "chosen_trace_id" in data else f"row {rows - batch.num_rows + i}"
                examples.append(f"{who}: {', '.join(problems)}")
    passed = identical == 0 and small == 0 and inconsistent == 0
    return CheckOutcome(
        passed,
        f"every pair has chosen ≠ rejected and margin ≥ {min_margin}"
        if passed
        else f"{identical} identical pair(s), {small} with margin < {min_margin} or ≤ 0, {inconsistent} inconsistent margin(s)",
        {
            "pairs": rows,
            "pairs_identical": identical,
            "pairs_below_min_margin": small,
            "pairs_inconsistent_margin": inconsistent,
            "min_margin": min_margin,
            "examples": ", ".join(examples),
        },
    )
