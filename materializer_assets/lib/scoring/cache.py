"""The score cache: what a model answered about a trace, kept in the warehouse.

Keyed by (scorer model, prompt version, content hash), so re-materializing a
cell, or a backfill over unchanged traces, makes zero calls; a new prompt
version or a changed trace is asked again. Only answers worth keeping are
stored (see ``CACHEABLE_STATUSES``): errors are asked again next run.

Layout (local folder or S3, under the warehouse root)::

    score-cache/<kind>/<model-slug>-<hash>/<prompt-version>/date=D/model=M/part-<token>.parquet

Each file holds ``key, payload (JSON), written_at``. Files are immutable and
uniquely named, so concurrent runs never overwrite each other: each writes its
own files (locally to a ``_``-prefixed temporary name, then renamed; on S3 one
PUT); readers take the newest entry of a key. A shard is one cell, so a lookup
reads only that cell's entries; :meth:`CacheShard.compact` merges a shard's
files when re-runs have piled them up.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from datetime import datetime, timezone
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..slugs import model_slug
from ..storage import Location

CACHE_DIR = "score-cache"
CACHE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("written_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def content_key(*parts: object) -> str:
    """A stable key for inputs beyond the content hash (e.g. Ragas contexts)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:32]


class ScoreCache:
    """Score caches under ``<warehouse>/score-cache``."""

    def __init__(self, root: Location, flush_rows: int = 1000, compact_above_files: int = 16) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.compact_above_files = compact_above_files

    @classmethod
    def in_warehouse(cls, warehouse: Location, **kwargs) -> "ScoreCache":
        return cls(warehouse.join(CACHE_DIR), **kwargs)

    def shard(self, kind: str, model: str, prompt_version: str, day: str, cell_model_slug: str) -> "CacheShard":
        model_dir = f"{model_slug(model)}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
        path = posixpath.join(
            self.root.path, kind, model_dir, prompt_version, f"date={day}", f"model={cell_model_slug}"
        )
        return CacheShard(self.root.filesystem, path, self.flush_rows, self.compact_above_files)


class CacheShard:
    """One (kind, model, prompt version, cell) of the cache: loaded once, appended to."""

    def __init__(self, filesystem: pafs.FileSystem, path: str, flush_rows: int, compact_above_files: int) -> None:
        self.filesystem = filesystem
        self.path = path
        self.flush_rows = flush_rows
        self.compact_above_files = compact_above_files
        self._entries: dict[str, str] = {}
        self._pending: list[tuple[str, str]] = []
        self.files_written = 0
        self._load()

    @property
    def _is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def _files(self) -> list[str]:
        selector = pafs.FileSelector(self.path, recursive=False, allow_not_found=True)
        return sorted(
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
            and posixpath.basename(info.path).startswith("part-")
            and info.path.endswith(".parquet")
        )

    def _read(self, files: list[str]) -> pa.Table:
        if not files:
            return CACHE_SCHEMA.empty_table()
        return ds.dataset(files, schema=CACHE_SCHEMA, format="parquet", filesystem=self.filesystem).to_table()

    def _load(self) -> None:
        for attempt in range(3):
            files = self._files()
            try:
                table = self._read(files)
                break
            except (FileNotFoundError, OSError):
                if attempt == 2:  # a concurrent compaction kept deleting what we listed
                    raise
        table = table.sort_by([("written_at", "ascending")])
        for key, payload in zip(table.column("key").to_pylist(), table.column("payload").to_pylist()):
            self._entries[key] = payload  # newest wins
        self.files_at_load = len(files)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        payload = self._entries.get(key)
        return json.loads(payload) if payload is not None else None

    def put(self, key: str, payload: dict) -> None:
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        self._entries[key] = text
        self._pending.append((key, text))
        if len(self._pending) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write pending entries as one new file (so a crash later keeps what was paid for)."""
        if not self._pending:
            return
        now = datetime.now(timezone.utc)
        table = pa.table(
            {
                "key": [key for key, _ in self._pending],
                "payload": [payload for _, payload in self._pending],
                "written_at": pa.array([now] * len(self._pending), pa.timestamp("us", tz="UTC")),
            },
            schema=CACHE_SCHEMA,
        )
        self._write(table)
        self._pending = []

    def _write(self, table: pa.Table) -> str:
        if self._is_local:
            self.filesystem.create_dir(self.path, recursive=True)
        name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        final = posixpath.join(self.path, name)
        if self._is_local:
            temporary = posixpath.join(self.path, f"_{name}.tmp")
            pq.write_table(table, temporary, filesystem=self.filesystem, compression="zstd")
            self.filesystem.move(temporary, final)  # os.replace: readers see all or nothing
        else:
            pq.write_table(table, final, filesystem=self.filesystem, compression="zstd")
        self.files_written += 1
        return final

    def compact(self) -> bool:
        """Merge the shard's files into one when there are more than ``compact_above_files``.

        Safe next to concurrent runs: the merged file is written before any
        old one is deleted, so a reader sees every entry at least once.
        """
        files = self._files()
        if len(files) <= self.compact_above_files:
            return False
        try:
            table = self._read(files)
        except (FileNotFoundError, OSError):
            return False  # someone else is compacting
        newest = pc.sort_indices(table, [("written_at", "descending")])
        table = table.take(newest)
        seen: set[str] = set()
        keep = []
        for index, key in enumerate(table.column("key").to_pylist()):
            if key not in seen:
                seen.add(key)
                keep.append(index)
        self._write(table.take(pa.array(keep, pa.int64())))
        for path in files:
            try:
                self.filesystem.delete_file(path)
            except (FileNotFoundError, OSError):
                pass
        return True

    def close(self) -> None:
        self.flush()
        self.compact()

