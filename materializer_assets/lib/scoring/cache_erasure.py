"""GDPR erasure of the score cache (``<warehouse>/score-cache``).

A cache entry's payload is the judge's (or Ragas') answer about a trace, and
judge reasoning quotes the user's answer, so the cache is a copy of user data.
Entries carry the ``trace_id`` they were written for (see
:mod:`~materializer_assets.lib.scoring.cache`); :class:`ScoreCacheOutput`
erases by ``targets.trace_ids``:

- **erase**: every shard (``<kind>/<model>/<prompt-version>/date=D/model=M``)
  holding an entry of a targeted trace, or an entry without a trace id (written
  before the column existed: nobody can tell whose it is, and it is only a
  cache), is rewritten as one new file of the kept entries, published like the
  cache's own files (local temporary file + rename, on S3 one PUT), then the
  old files are deleted. A shard with nothing kept just loses its files. A
  cache file that cannot be read is deleted too (it cannot be checked, and
  scoring could not read it either).
- **purge**: deletes the leftover ``_*.tmp`` files of crashed local writers
  once they are older than ``stale_after``.
- **remaining**: counts targeted and trace-less entries in every Parquet file
  under the cache root, temporary files included, and fails closed: a file
  that cannot be read raises :class:`ScoreCacheUnreadableError`.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..erasure import ErasableOutput, ErasureTargets, OutputErasure
from ..storage import Location
from .cache import CACHE_SCHEMA, read_entries, write_entries

try:  # the erasure module's name for "cannot verify"; older versions only have ErasureIncompleteError
    from ..erasure import ErasureVerificationError as _VerificationError
except ImportError:  # pragma: no cover - depends on the erasure module's version
    from ..erasure import ErasureIncompleteError as _VerificationError

TRACE_COLUMN = "trace_id"
TEMPORARY_SUFFIX = ".tmp"
MAX_PASSES = 3  # rewrites of one shard in a run, when concurrent writers keep adding targeted entries


class ScoreCacheUnreadableError(_VerificationError):
    """A score-cache file cannot be read, so erasure cannot tell whether it holds erased users' entries."""


def _removable(table: pa.Table | pa.RecordBatch, values: pa.Array) -> pa.Array:
    """True for entries of targeted traces and for entries without a trace id (legacy)."""
    traces = table.column(TRACE_COLUMN)
    return pc.or_(pc.is_null(traces), pc.fill_null(pc.is_in(traces, value_set=values), False))


def _is_temporary(path: str) -> bool:
    return posixpath.basename(path).startswith("_") and path.endswith(TEMPORARY_SUFFIX)


class ScoreCacheOutput(ErasableOutput):
    """The score cache under ``cache_root`` (``ScoreCache.root``, e.g. ``<warehouse>/score-cache``)."""

    kind = "score_cache"

    def __init__(
        self, cache_root: Location, name: str = "score-cache", stale_after: timedelta = timedelta(hours=1)
    ) -> None:
        self.root = cache_root
        self.name = name
        self.stale_after = stale_after
        self.unreadable_deleted = 0

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.root.filesystem

    def _listing(self) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.root.path, recursive=True, allow_not_found=True)
        return sorted(
            (info for info in self.filesystem.get_file_info(selector) if info.type == pafs.FileType.File),
            key=lambda info: info.path,
        )

    def exists(self) -> bool:
        """Whether anything was ever written under the cache root."""
        return bool(self._listing())

    def shards(self) -> dict[str, list[str]]:
        """Folder → its published cache files (``*.parquet``, not the ``_``-prefixed temporaries)."""
        folders: dict[str, list[str]] = defaultdict(list)
        for info in self._listing():
            if info.path.endswith(".parquet") and not posixpath.basename(info.path).startswith("_"):
                folders[posixpath.dirname(info.path)].append(info.path)
        return dict(sorted(folders.items()))

    def cell_label(self, folder: str) -> str:
        """``date|model|kind/scorer/prompt-version`` of a shard folder (its path when it is laid out otherwise)."""
        relative = posixpath.relpath(folder, self.root.path)
        parts = relative.split("/")
        if len(parts) == 5 and parts[3].startswith("date=") and parts[4].startswith("model="):
            kind, scorer, version, day, model = parts
            return f"{day.removeprefix('date=')}|{model.removeprefix('model=')}|{kind}/{scorer}/{version}"
        return relative

    # ------------------------------------------------------------------ erase

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        result = OutputErasure(self.name, self.kind, TRACE_COLUMN)
        values = pa.array(sorted(targets.trace_ids), pa.string())
        for folder, files in self.shards().items():
            removed = self._erase_shard(folder, files, values)
            if removed:
                label = self.cell_label(folder)
                result.rows_removed_by_cell[label] = result.rows_removed_by_cell.get(label, 0) + removed
        return result

    def _erase_shard(self, folder: str, files: list[str], values: pa.Array) -> int:
        removed = 0
        for _ in range(MAX_PASSES):
            table, files = self._read_shard(files)
            if not files:
                break
            mask = _removable(table, values)
            count = pc.sum(mask).as_py() or 0
            if not count:
                break
            kept = table.filter(pc.invert(mask))
            written = write_entries(self.filesystem, folder, kept) if kept.num_rows else None
            for path in files:  # only after the kept entries are published: a reader never misses one
                self._delete(path)
            removed += count
            # A concurrent scoring run may have added files meanwhile: look again (remaining() checks at the end).
            files = [path for path in self.shards().get(folder, []) if path != written]
            if not files:
                break
        return removed

    def _read_shard(self, files: list[str]) -> tuple[pa.Table, list[str]]:
        """The entries of ``files`` that still exist; unreadable ones are deleted (and not returned)."""
        readable, tables = [], []
        for path in files:
            try:
                tables.append(read_entries(self.filesystem, [path]))
            except FileNotFoundError:
                continue  # a concurrent compaction merged it away
            except (OSError, pa.ArrowInvalid):
                self._delete(path)
                self.unreadable_deleted += 1
                continue
            readable.append(path)
        return (pa.concat_tables(tables) if tables else CACHE_SCHEMA.empty_table()), readable

    def _delete(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ purge

    def purge(self) -> dict:
        """Delete ``_*.tmp`` files (crashed local writers) older than ``stale_after``."""
        cutoff = datetime.now(timezone.utc) - self.stale_after
        deleted = 0
        for info in self._listing():
            if not _is_temporary(info.path):
                continue
            if info.mtime is None or info.mtime.astimezone(timezone.utc) < cutoff:
                self._delete(info.path)
                deleted += 1
        result = {"deleted_files": deleted}
        if self.unreadable_deleted:
            result["unreadable_files_deleted"] = self.unreadable_deleted
        return result

    # ------------------------------------------------------------------ verify

    def remaining(self, targets: ErasureTargets) -> int:
        """Targeted and trace-less entries in every Parquet file under the root; unreadable files raise."""
        values = pa.array(sorted(targets.trace_ids), pa.string())
        found = 0
        for info in self._listing():
            if not (info.path.endswith(".parquet") or _is_temporary(info.path)):
                continue
            try:
                names = pq.read_schema(info.path, filesystem=self.filesystem).names
                if TRACE_COLUMN in names:
                    column = pq.read_table(info.path, columns=[TRACE_COLUMN], filesystem=self.filesystem)
                    found += pc.sum(_removable(column, values)).as_py() or 0
                else:  # written before trace ids were recorded: every entry is unattributed
                    found += pq.ParquetFile(info.path, filesystem=self.filesystem).metadata.num_rows
            except FileNotFoundError:
                continue  # deleted since the listing (a temporary renamed, a compaction): not present
            except (OSError, pa.ArrowInvalid) as exc:
                raise ScoreCacheUnreadableError(f"cannot verify score-cache file {info.path}: {exc}") from exc
        return found
