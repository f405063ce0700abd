"""Erasure and cleanup in the table: rows deleted by user or trace, snapshots expired, files purged.

DESIGN §5: a delete rewrites most files it touches, so callers batch all values
of a run into one :func:`delete_rows`. After it, :func:`expire_and_purge` drops
every older snapshot and physically deletes the files only they referenced (an
older snapshot could still read the erased rows); :func:`table_files` lists
what is left, for verification.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

import pyarrow.fs as pafs
from pyiceberg.expressions import In
from pyiceberg.table import Table

from .base import _commit_attempts
from .reading import stream_scan
from .tables import ensure_metrics_properties, table_filesystem

def count_matching_rows(table: Table, column: str, values: Iterable[str]) -> dict[str, int]:
    """Rows whose ``column`` is in ``values``, per cell key (reads only three columns)."""
    values = sorted(set(values))
    table.refresh()
    if not values or table.current_snapshot() is None or column not in table.schema().column_names:
        return {}
    counts: Counter = Counter()
    scan = table.scan(row_filter=In(column, values), selected_fields=("date", "model_slug", column))
    for batch in stream_scan(scan):
        for day, slug in zip(batch.column("date").to_pylist(), batch.column("model_slug").to_pylist()):
            counts[f"{day}|{slug}"] += 1
    return dict(counts)


def delete_rows(table: Table, column: str, values: Iterable[str], snapshot_properties: Mapping[str, str] | None = None) -> dict[str, int]:
    """One copy-on-write delete of every row whose ``column`` is in ``values``; rows removed per cell.

    DESIGN §5: a delete rewrites most files it touches, so callers batch all
    values of a run into this one call.
    """
    counts = count_matching_rows(table, column, values)
    if not counts:
        return {}
    predicate = In(column, sorted(set(values)))
    ensure_metrics_properties(table)  # the rewritten files' metrics follow the table's properties
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            table.delete(predicate, snapshot_properties=dict(snapshot_properties or {}))
    return counts


@dataclass
class PurgeReport:
    expired_snapshots: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0

    def as_dict(self) -> dict:
        return {"expired_snapshots": self.expired_snapshots, "deleted_files": self.deleted_files, "deleted_bytes": self.deleted_bytes}


def _referenced_files(table: Table, snapshots: Iterable[Any], live_only: bool) -> set[str]:
    io = table.io
    referenced: set[str] = set()
    for snapshot in snapshots:
        referenced.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            referenced.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=live_only):
                referenced.add(entry.data_file.file_path)
    return referenced


def expire_and_purge(
    table: Table,
    older_than: datetime | None = None,
    orphan_grace: timedelta = timedelta(hours=1),
) -> PurgeReport:
    """Expire snapshots and physically delete every file no remaining snapshot needs.

    ``older_than=None`` keeps only the current snapshot (what an erasure needs:
    any older snapshot can still read erased rows). Deleted are: files that only
    expired snapshots referenced, older ``*.metadata.json`` versions, and
    orphans (files no snapshot ever referenced, e.g. from a failed write) older
    than ``orphan_grace`` (younger ones may belong to a write in flight).
    """
    report = PurgeReport()
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            current = table.current_snapshot()
            before = list(table.snapshots())
            protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
            cutoff = older_than.timestamp() * 1000 if older_than is not None else None
            expire = [
                s.snapshot_id
                for s in before
                if s.snapshot_id not in protected
                and (current is None or s.snapshot_id != current.snapshot_id)
                and (cutoff is None or s.timestamp_ms < cutoff)
            ]
            if expire:
                table.maintenance.expire_snapshots().by_ids(expire).commit()
    report.expired_snapshots = len(expire)
    table.refresh()
    referenced_ever = _referenced_files(table, before, live_only=False)
    live = _referenced_files(table, table.snapshots(), live_only=True)
    filesystem, to_path = table_filesystem(table)
    live_paths = {to_path(uri) for uri in live} | {to_path(table.metadata_location)}
    ever_paths = {to_path(uri) for uri in referenced_ever}
    current_metadata = to_path(table.metadata_location)
    now = datetime.now(timezone.utc)
    selector = pafs.FileSelector(to_path(table.location()), recursive=True, allow_not_found=True)
    infos = [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]
    current_mtime = next((info.mtime for info in infos if info.path == current_metadata), None)
    for info in infos:
        if info.path in live_paths:
            continue
        mtime = info.mtime.astimezone(timezone.utc) if info.mtime is not None else now
        old_metadata = info.path.endswith(".metadata.json") and (
            current_mtime is None or info.mtime is None or info.mtime <= current_mtime
        )
        if info.path in ever_paths or old_metadata or mtime < now - orphan_grace:
            filesystem.delete_file(info.path)
            report.deleted_files += 1
            report.deleted_bytes += info.size or 0
    return report


def table_files(table: Table) -> list[str]:
    """Every file under the table's location (paths on its filesystem)."""
    filesystem, to_path = table_filesystem(table)
    selector = pafs.FileSelector(to_path(table.location()), recursive=True, allow_not_found=True)
    return sorted(info.path for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File)
