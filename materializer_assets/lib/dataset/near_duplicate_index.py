"""The cross-cell near-duplicate index: signatures of every cell's published train and test rows.

A cell's ``reward_dataset`` keeps the within-cell rule of :mod:`.splits`; this
index extends it to every other cell of the table, whatever day and whatever
order cells are materialized, re-run or backfilled:

* when a cell is published, the signature of each row it kept in ``train`` or
  ``test`` is written as that cell of the Parquet lake dataset
  ``near-dup-index`` (``<warehouse>/near-dup-index/date=D/model=M/``), replacing
  the cell's previous version (a re-run replaces it, like the cell itself);
* when a cell plans its splits it reads the index of every *other* cell:
  - a **test** row whose prompt near-duplicates a train row of another cell is
    excluded (``near_duplicate_of_train``, counted in
    ``rows_excluded_near_duplicate_of_other_cell_train``);
  - a **train** row whose prompt near-duplicates a test row another cell
    already published (a *late* train row) is **dropped from training**:
    ``split = "excluded"``, ``excluded_reason = "near_duplicate_of_test"``,
    counted in ``rows_dropped_from_train_near_duplicate_of_other_cell_test``.
    The published test row stays as it is (an already-published test set
    never changes under a trainer's feet, and no row ever moves between
    train and test: splits stay a pure function of the user).

So after any sequence of cell runs, every published test row has no near
duplicate among the published train rows of any cell. Cells planned at the
same moment (a backfill) would each plan against what the other had not yet
published; so a cell writes its index entries before its rows and then reads
again the index cells published since it planned: a conflict across splits
makes it plan again (:func:`.near_dup_lake.conflicts_since`). Of two such
cells, the one that checks second sees the other.

What is stored: ids (``trace_id``, ``observation_id``, ``user_id``, so GDPR
erasure removes a forgotten user's or revoked trace's entries like any other
lake dataset), the split, the MinHash signature (32-bit minima of hashed
byte shingles — no text) and the spec it was made with; rows of another spec
are ignored (and counted) until their cell is re-run.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .lsh import band_hashes
from .near_duplicates import NearDuplicateConfig, NearDuplicateReference
from .schema import TEST

INDEX_DATASET = "near-dup-index"


def index_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("trace_id", pa.string()),
            pa.field("observation_id", pa.string()),
            pa.field("user_id", pa.string()),
            pa.field("split", pa.string()),
            pa.field("signature", pa.list_(pa.uint32(), num_perm)),
            pa.field("signature_spec", pa.string()),
        ]
    )


def signature_spec(config: NearDuplicateConfig) -> str:
    return f"oph-bytes(perm={config.num_perm},k={config.shingle_size},seed={config.seed},max_chars={config.max_chars})"


def index_table(ids: pa.Table, is_test: np.ndarray, sig: np.ndarray, bands: np.ndarray | None = None) -> pa.Table:
    """Index rows: ``ids`` (trace_id, observation_id, user_id) with split and signature.
    ``signature_spec`` is filled in by :func:`with_spec`."""
    n, p = sig.shape if sig.ndim == 2 else (0, 0)
    flat = pa.array(np.ascontiguousarray(sig, np.uint32).ravel(), pa.uint32())
    return pa.table(
        {
            "trace_id": ids.column("trace_id").cast(pa.string()),
            "observation_id": ids.column("observation_id").cast(pa.string()),
            "user_id": ids.column("user_id").cast(pa.string()),
            "split": pa.array(np.where(is_test, TEST, "train").tolist() if n else [], pa.string()),
            "signature": pa.FixedSizeListArray.from_arrays(flat, p) if p else pa.array([], pa.list_(pa.uint32(), 1)),
        }
    )


def with_spec(table: pa.Table, config: NearDuplicateConfig) -> pa.Table:
    spec = signature_spec(config)
    table = table.cast(index_schema(config.num_perm).remove(5)) if table.num_rows else table
    return table.append_column("signature_spec", pa.array([spec] * table.num_rows, pa.string()))


# What a reference is made of; ids stay in the index (for erasure) and are not read.
REFERENCE_COLUMNS = ["split", "signature", "signature_spec"]
_REFERENCE_BATCH_ROWS = 1 << 14


def load_reference(
    cells: Iterable[pa.Table | Iterable[pa.RecordBatch]], config: NearDuplicateConfig
) -> tuple[NearDuplicateReference, int]:
    """The reference other cells published (each cell a table or a stream of batches with
    :data:`REFERENCE_COLUMNS`), and how many index rows were ignored (another spec). Read a
    batch at a time: only each row's low bits and band hashes are kept."""
    params = config.lsh_params()
    spec = signature_spec(config)
    parts, ignored = [], 0
    for cell in cells:
        batches = cell.to_batches(max_chunksize=_REFERENCE_BATCH_ROWS) if isinstance(cell, pa.Table) else cell
        for batch in batches:
            if not batch.num_rows:
                continue
            same = pc.equal(batch.column("signature_spec"), spec)
            ignored += batch.num_rows - (pc.sum(same).as_py() or 0)
            batch = batch.filter(same)
            if not batch.num_rows:
                continue
            signatures = batch.column("signature")
            sig = np.asarray(signatures.flatten().to_numpy(zero_copy_only=False), np.uint32).reshape(batch.num_rows, config.num_perm)
            is_test = np.asarray(pc.equal(batch.column("split"), TEST).to_numpy(zero_copy_only=False), bool)
            parts.append(NearDuplicateReference.from_rows(sig, band_hashes(sig, params), is_test))
    return NearDuplicateReference.concat(parts, config.num_perm, params.bands), ignored
