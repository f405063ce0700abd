"""The score cache: what a model answered about a trace, kept in the warehouse.

Keyed by what the scorer actually saw (see :mod:`.runner`): for the judge a
hash of the request as sent — the rendered messages, i.e. the text after
redaction, the model, sampling settings and structured-output mode — with the
prompt version; for Ragas its inputs, metric set and version, and models
(:func:`content_key` hashes them). Re-materializing a cell, or a backfill over
unchanged traces, makes zero calls; a new prompt version, model, redaction or
a changed trace is asked again. The runner decides what to serve: ``ok``
answers for good, other statuses only once they were asked ``max_tries``
times across runs (the payload counts them); ``not_configured`` is never
stored.

Layout (local folder or S3, under the warehouse root)::

    score-cache/<kind>/<model-slug>-<hash>/<prompt-version>/date=D/model=M/part-<token>.parquet

Each file holds ``key, payload (JSON), written_at, trace_id``. Files are
immutable and uniquely named, so concurrent runs never overwrite each other:
each writes its own files (locally to a ``_``-prefixed temporary name, then
renamed; on S3 one PUT); readers take the newest entry of a key. A shard is one
cell, so a lookup reads only that cell's entries; :meth:`CacheShard.compact`
merges a shard's files when re-runs have piled them up.

``trace_id`` is the trace an entry was written for, so GDPR erasure can find
it (the payload quotes the user's answer; see
:mod:`~materializer_assets.lib.scoring.cache_erasure`). Several traces with the
same content share one key: a trace answered from another trace's entry gets an
entry of its own (same payload, see :meth:`CacheShard.attribute`), so erasing
either trace leaves the other one's entry. Files written before the column
existed read as ``trace_id = null``; erasure removes such entries.
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
        pa.field("trace_id", pa.string(), nullable=True),  # null: written before the column existed
    ]
)


def content_key(*parts: object) -> str:
    """A stable key (hex, 128 bits) of JSON-serializable ``parts``, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:32]


def read_entries(filesystem: pafs.FileSystem, files: list[str]) -> pa.Table:
    """The entries of cache files (legacy files without ``trace_id`` read as null there)."""
    if not files:
        return CACHE_SCHEMA.empty_table()
    return ds.dataset(files, schema=CACHE_SCHEMA, format="parquet", filesystem=filesystem).to_table()


def write_entries(filesystem: pafs.FileSystem, folder: str, table: pa.Table) -> str:
    """Publish ``table`` as one new uniquely named file of ``folder``: all or nothing.

    Locally written to a ``_``-prefixed temporary name and renamed; on S3 one PUT.
    """
    local = isinstance(filesystem, pafs.LocalFileSystem)
    if local:
        filesystem.create_dir(folder, recursive=True)
    name = f"part-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
    final = posixpath.join(folder, name)
    if local:
        temporary = posixpath.join(folder, f"_{name}.tmp")
        pq.write_table(table, temporary, filesystem=filesystem, compression="zstd")
        filesystem.move(temporary, final)  # os.replace: readers see all or nothing
    else:
        pq.write_table(table, final, filesystem=filesystem, compression="zstd")
    return final


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
        self._traces: dict[str, set[str]] = {}  # key -> traces that have an entry of their own
        self._pending: list[tuple[str, str, str | None]] = []
        self.files_written = 0
        self._load()

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
        return read_entries(self.filesystem, files)

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
        columns = (table.column(name).to_pylist() for name in ("key", "payload", "trace_id"))
        for key, payload, trace_id in zip(*columns):
            self._entries[key] = payload  # newest wins
            if trace_id is not None:
                self._traces.setdefault(key, set()).add(trace_id)
        self.files_at_load = len(files)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        payload = self._entries.get(key)
        return json.loads(payload) if payload is not None else None

    def put(self, key: str, payload: dict, trace_id: str | None = None) -> None:
        """Keep ``payload`` under ``key``, written for the trace ``trace_id`` (erasure finds it by that)."""
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        self._entries[key] = text
        self._append(key, text, trace_id)

    def attribute(self, key: str, trace_id: str | None) -> None:
        """Record that ``trace_id`` was answered from ``key``'s entry, when no entry of its own exists yet.

        The entry quotes the trace's content, so the trace gets an entry of its
        own (same payload): erasing another trace with the same content must not
        leave this one's copy unattributed. Costs a write only once per trace.
        """
        payload = self._entries.get(key)
        if payload is None or trace_id is None or trace_id in self._traces.get(key, ()):
            return
        self._append(key, payload, trace_id)

    def _append(self, key: str, text: str, trace_id: str | None) -> None:
        if trace_id is not None:
            self._traces.setdefault(key, set()).add(trace_id)
        self._pending.append((key, text, trace_id))
        if len(self._pending) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write pending entries as one new file (so a crash later keeps what was paid for)."""
        if not self._pending:
            return
        now = datetime.now(timezone.utc)
        table = pa.table(
            {
                "key": [key for key, _, _ in self._pending],
                "payload": [payload for _, payload, _ in self._pending],
                "written_at": pa.array([now] * len(self._pending), pa.timestamp("us", tz="UTC")),
                "trace_id": [trace_id for _, _, trace_id in self._pending],
            },
            schema=CACHE_SCHEMA,
        )
        self._write(table)
        self._pending = []

    def _write(self, table: pa.Table) -> str:
        final = write_entries(self.filesystem, self.path, table)
        self.files_written += 1
        return final

    def compact(self) -> bool:
        """Merge the shard's files into one when there are more than ``compact_above_files``.

        Keeps the newest entry of each (key, trace). Safe next to concurrent
        runs: the merged file is written before any old one is deleted, so a
        reader sees every entry at least once.
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
        seen: set[tuple[str, str | None]] = set()
        keep = []
        pairs = zip(table.column("key").to_pylist(), table.column("trace_id").to_pylist())
        for index, pair in enumerate(pairs):
            if pair not in seen:
                seen.add(pair)
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

