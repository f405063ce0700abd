"""GDPR erasure: forget users everywhere we keep their data, provably, once per request.

Who is erased (an :class:`ErasureRequest` each):

- users whose current consent-registry decision is ``granted = false``
  (revoked or refused), and
- users on an erasure list (``MATERIALIZER_ERASURE_LIST``: CSV with a
  ``user_id`` column and optionally ``requested_at``, Parquet with the same
  columns, or plain text with one id per line).

A request is *pending* until a run erased it; the ledger
(``<warehouse>/_erasure/state.json``) remembers, per salted hash of the user id,
the newest request time already handled. A new revocation with a newer
timestamp is pending again; a second run with nothing new is a no-op.

Where from: every :class:`ErasableOutput` — the Parquet lake datasets
(``raw-traces``, ``langfuse-traces`` and any other ``lake_dataset``), every
Iceberg table, and whatever later stages register with
:func:`register_erasable_output` (exports, caches). An output keyed by user
erases by ``user_id``; one without that column erases by the ``trace_id``s
the other outputs hold for those users.

How, per run:

1. collect the erased users' trace ids (before anything is deleted);
2. rewrite every affected lake cell without their rows (through
   :class:`~materializer_assets.lib.lake.ParquetLake`, so publishing stays
   atomic and the old files are deleted), and run **one** batched
   ``delete(In("user_id", [...]))`` per Iceberg table (DESIGN §5);
3. purge: expire every Iceberg snapshot but the current one and delete the
   files only they referenced, old metadata versions and stale orphans;
   delete stale lake leftovers (unpublished files, old staging);
4. verify by reading every Parquet file physically present under each output
   (not just the live ones): any remaining row fails the run and nothing is
   recorded, so the next run retries;
5. write an audit record ``<warehouse>/_erasure/audit/<time>-<id>.json``
   (when, salted hashes of the user ids, rows removed per output and cell)
   and update the ledger.

User ids are never written in clear: hashes are HMAC-SHA256 keyed by a salt
(``MATERIALIZER_ERASURE_SALT``, or a random one created once in
``<warehouse>/_erasure/salt``; set your own secret for real pseudonymity).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import posixpath
import secrets
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .consent import ConsentRegistry, _parse_time
from .lake import MANIFEST_NAME, STAGING_DIR, CellAddress, CellNotMaterialized, ParquetLake
from .storage import Location, S3Options, resolve

ERASURE_DIR = "_erasure"
STATE_FILE = "state.json"
SALT_FILE = "salt"
AUDIT_DIR = "audit"

REASON_CONSENT_REVOKED = "consent_revoked"
REASON_ERASURE_REQUEST = "erasure_request"

USER_COLUMN = "user_id"
TRACE_COLUMN = "trace_id"


class ErasureError(RuntimeError):
    """Base of the named erasure failures."""


class ErasureListUnavailableError(ErasureError):
    """The configured erasure list cannot be read: the run fails (nobody is silently skipped)."""


class ErasureIncompleteError(ErasureError):
    """Rows of erased users are still present after the run; the ledger is not updated."""


# --------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ErasureRequest:
    user_id: str
    requested_at: datetime | None
    reason: str


def requests_from_registry(registry: ConsentRegistry | None) -> list[ErasureRequest]:
    """Users whose newest registry decision is an explicit ``granted = false``."""
    if registry is None:
        return []
    entries = registry.items()
    return [
        ErasureRequest(user_id, entry.updated_at, REASON_CONSENT_REVOKED)
        for user_id, entry in sorted(entries)
        if entry.granted is False
    ]


def load_erasure_list(location: str, s3_options: S3Options | None = None) -> list[ErasureRequest]:
    """Requests from a CSV / Parquet / plain-text file (local or ``s3://``)."""
    location = location.strip()
    if not location:
        return []
    try:
        target = resolve(location, s3_options)
        if location.lower().endswith(".parquet"):
            table = pq.read_table(target.path, filesystem=target.filesystem)
            if USER_COLUMN not in table.column_names:
                raise ValueError(f"no {USER_COLUMN!r} column")
            rows = table.to_pylist()
        else:
            with target.filesystem.open_input_stream(target.path) as stream:
                text = stream.read().decode("utf-8-sig")
            rows = _rows_from_text(text)
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise ErasureListUnavailableError(f"cannot read the erasure list {location}: {exc}") from exc
    requests = []
    for row in rows:
        user_id = row.get(USER_COLUMN)
        if user_id is None or str(user_id).strip() == "":
            continue
        requests.append(ErasureRequest(str(user_id).strip(), _parse_time(row.get("requested_at")), REASON_ERASURE_REQUEST))
    return requests


def _rows_from_text(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    if USER_COLUMN in [h.strip() for h in header]:
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        return [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    return [{USER_COLUMN: line.strip()} for line in lines]  # one id per line


def merge_requests(*groups: Iterable[ErasureRequest]) -> list[ErasureRequest]:
    """One request per user: the newest (a request without a time counts as oldest)."""
    newest: dict[str, ErasureRequest] = {}
    for group in groups:
        for request in group:
            previous = newest.get(request.user_id)
            if previous is None or _later(request.requested_at, previous.requested_at):
                newest[request.user_id] = request
    return [newest[user_id] for user_id in sorted(newest)]


def _later(candidate: datetime | None, current: datetime | None) -> bool:
    if current is None:
        return candidate is not None
    return candidate is not None and candidate > current


def requests_fingerprint(requests: Sequence[ErasureRequest]) -> str:
    digest = hashlib.sha256()
    for request in sorted(requests, key=lambda r: (r.user_id, r.reason)):
        digest.update(json.dumps([request.user_id, request.reason, _iso(request.requested_at)]).encode())
    return digest.hexdigest()[:16]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


# --------------------------------------------------------------------- ledger


class ErasureLedger:
    """What was already erased (salted hashes only), the salt, and the audit records."""

    def __init__(self, root: Location, salt: str | None = None) -> None:
        self.location = root.join(ERASURE_DIR)
        self._salt = salt.encode() if salt else None
        self._state: dict | None = None

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.location.filesystem

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.location.path, *parts)

    def _read(self, path: str) -> bytes | None:
        try:
            with self.filesystem.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return None
            raise

    def _write(self, path: str, payload: bytes) -> None:
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            self.filesystem.create_dir(posixpath.dirname(path), recursive=True)
            temporary = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            with self.filesystem.open_output_stream(temporary) as out:
                out.write(payload)
            self.filesystem.move(temporary, path)  # atomic rename
        else:
            with self.filesystem.open_output_stream(path) as out:  # one PUT
                out.write(payload)

    @property
    def salt(self) -> bytes:
        if self._salt is None:
            stored = self._read(self._path(SALT_FILE))
            if stored is None:
                stored = secrets.token_hex(32).encode()
                self._write(self._path(SALT_FILE), stored)
                stored = self._read(self._path(SALT_FILE)) or stored  # a racing writer's salt wins
            self._salt = stored.strip()
        return self._salt

    def user_hash(self, user_id: str) -> str:
        return hmac.new(self.salt, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    @property
    def state(self) -> dict:
        if self._state is None:
            raw = self._read(self._path(STATE_FILE))
            self._state = json.loads(raw) if raw else {"version": 1, "users": {}}
        return self._state

    def pending(self, requests: Iterable[ErasureRequest]) -> list[ErasureRequest]:
        users = self.state["users"]
        result = []
        for request in requests:
            done = users.get(self.user_hash(request.user_id))
            if done is None:
                result.append(request)
                continue
            handled = _parse_time(done.get("requested_at"))
            if _later(request.requested_at, handled):
                result.append(request)
        return result

    def is_forgotten(self, user_id: str | None) -> bool:
        return user_id is not None and self.user_hash(user_id) in self.state["users"]

    def forgotten_mask(self, batch: pa.RecordBatch | pa.Table, registry: ConsentRegistry | None = None) -> pa.Array:
        """True for rows of users this ledger erased, so ingestion never brings them back.

        A user who grants consent again *after* the erasure (a newer registry row
        with granted = true) is not filtered any more.
        """
        users = self.state["users"]
        if not users or USER_COLUMN not in batch.schema.names:
            return pa.array([False] * batch.num_rows, pa.bool_())
        decisions: dict[str, bool] = {}
        mask = []
        for user_id in batch.column(USER_COLUMN).to_pylist():
            if user_id is None:
                mask.append(False)
                continue
            if user_id not in decisions:
                erased = users.get(self.user_hash(user_id))
                forgotten = erased is not None
                entry = registry.get(user_id) if (forgotten and registry is not None) else None
                if entry is not None and entry.granted is True and entry.updated_at is not None:
                    erased_request = _parse_time(erased.get("requested_at")) or _parse_time(erased.get("erased_at"))
                    forgotten = erased_request is not None and entry.updated_at <= erased_request
                decisions[user_id] = forgotten
            mask.append(decisions[user_id])
        return pa.array(mask, pa.bool_())

    def drop_forgotten(
        self, batch: pa.RecordBatch, registry: ConsentRegistry | None = None
    ) -> tuple[pa.RecordBatch, int]:
        """``batch`` without the rows of forgotten users, and how many were dropped."""
        mask = self.forgotten_mask(batch, registry)
        dropped = pc.sum(mask).as_py() or 0
        return (batch.filter(pc.invert(mask)) if dropped else batch), dropped

    def record(self, requests: Iterable[ErasureRequest], erased_at: datetime, audit_id: str) -> None:
        users = self.state["users"]
        for request in requests:
            users[self.user_hash(request.user_id)] = {
                "requested_at": _iso(request.requested_at),
                "reason": request.reason,
                "erased_at": _iso(erased_at),
                "audit": audit_id,
            }
        self._write(self._path(STATE_FILE), json.dumps(self.state, indent=1, sort_keys=True).encode())

    def write_audit(self, record: dict) -> str:
        path = self._path(AUDIT_DIR, f"{record['audit_id']}.json")
        self._write(path, json.dumps(record, indent=1, sort_keys=True).encode())
        return posixpath.join(self.location.uri, AUDIT_DIR, f"{record['audit_id']}.json")

    def audit_records(self) -> list[dict]:
        selector = pafs.FileSelector(self._path(AUDIT_DIR), allow_not_found=True)
        records = []
        for info in sorted(self.filesystem.get_file_info(selector), key=lambda i: i.path):
            if info.type == pafs.FileType.File and info.path.endswith(".json"):
                records.append(json.loads(self._read(info.path) or b"{}"))
        return records


# --------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ErasureTargets:
    user_ids: frozenset[str]
    trace_ids: frozenset[str] = frozenset()

    def values_for(self, column: str) -> frozenset[str]:
        return self.user_ids if column == USER_COLUMN else self.trace_ids


@dataclass
class OutputErasure:
    output: str
    kind: str
    key_column: str | None
    rows_removed_by_cell: dict[str, int] = field(default_factory=dict)

    @property
    def rows_removed(self) -> int:
        return sum(self.rows_removed_by_cell.values())

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "key_column": self.key_column,
            "rows_removed": self.rows_removed,
            "rows_removed_by_cell": dict(sorted(self.rows_removed_by_cell.items())),
        }


class ErasableOutput(ABC):
    """Somewhere user data is kept. Later stages subclass this for their own outputs."""

    name: str
    kind: str

    def trace_ids_of(self, user_ids: frozenset[str]) -> set[str]:
        """Trace ids this output holds for ``user_ids`` (for outputs keyed only by trace)."""
        return set()

    @abstractmethod
    def erase(self, targets: ErasureTargets) -> OutputErasure:
        """Remove the targets' rows from what readers see."""

    def purge(self) -> dict:
        """Physically delete whatever still holds removed rows (old versions, snapshots)."""
        return {}

    @abstractmethod
    def remaining(self, targets: ErasureTargets) -> int:
        """Rows of the targets still physically present anywhere in this output."""


def _key_column(schema: pa.Schema) -> str | None:
    if USER_COLUMN in schema.names:
        return USER_COLUMN
    if TRACE_COLUMN in schema.names:
        return TRACE_COLUMN
    return None


def _match_mask(column: pa.ChunkedArray | pa.Array, values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.is_in(column, value_set=values), False)


def _count_matches_in_files(paths: Iterable[str], filesystem: pafs.FileSystem, targets: ErasureTargets) -> int:
    found = 0
    for path in paths:
        try:
            schema = pq.read_schema(path, filesystem=filesystem)
        except (OSError, pa.ArrowInvalid):
            continue  # not Parquet (manifests, metadata)
        # The same key erase() uses: user_id where there is one (trace ids are only unique per source).
        column = _key_column(schema)
        values = targets.values_for(column) if column else frozenset()
        if not values:
            continue
        table = pq.read_table(path, columns=[column], filesystem=filesystem)
        found += pc.sum(_match_mask(table.column(column), pa.array(sorted(values), pa.string()))).as_py() or 0
    return found


class LakeDatasetOutput(ErasableOutput):
    """A dataset of the Parquet lake (``<warehouse>/<dataset>/date=D/model=M/…``)."""

    kind = "parquet_lake"

    def __init__(self, lake: ParquetLake, dataset: str, stale_after: timedelta = timedelta(hours=1)) -> None:
        self.lake = lake
        self.dataset = dataset
        self.name = f"lake:{dataset}"
        self.stale_after = stale_after

    @property
    def base(self) -> str:
        return posixpath.join(self.lake.root.path, self.dataset)

    def cells(self) -> list[CellAddress]:
        fs = self.lake.filesystem
        cells = []
        for day in fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True)):
            name = posixpath.basename(day.path)
            if day.type != pafs.FileType.Directory or not name.startswith("date="):
                continue
            for model in fs.get_file_info(pafs.FileSelector(day.path, allow_not_found=True)):
                slug = posixpath.basename(model.path)
                if model.type == pafs.FileType.Directory and slug.startswith("model="):
                    cells.append(CellAddress(self.dataset, name.removeprefix("date="), slug.removeprefix("model=")))
        return sorted(cells, key=lambda c: (c.date, c.model_slug))

    def _published(self, address: CellAddress) -> list[str]:
        try:
            return self.lake.manifest(address)["files"]
        except CellNotMaterialized:
            return []

    def trace_ids_of(self, user_ids: frozenset[str]) -> set[str]:
        found: set[str] = set()
        values = pa.array(sorted(user_ids), pa.string())
        for path in self._all_parquet_files():
            schema = pq.read_schema(path, filesystem=self.lake.filesystem)
            if USER_COLUMN not in schema.names or TRACE_COLUMN not in schema.names:
                continue
            table = pq.read_table(path, columns=[USER_COLUMN, TRACE_COLUMN], filesystem=self.lake.filesystem)
            found.update(table.filter(_match_mask(table.column(USER_COLUMN), values)).column(TRACE_COLUMN).to_pylist())
        return {t for t in found if t is not None}

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        result = OutputErasure(self.name, self.kind, None)
        for address in self.cells():
            removed, key = self._erase_cell(address, targets)
            if key:
                result.key_column = result.key_column or key
            if removed:
                result.rows_removed_by_cell[f"{address.date}|{address.model_slug}"] = removed
        return result

    def _erase_cell(self, address: CellAddress, targets: ErasureTargets) -> tuple[int, str | None]:
        relative = self._published(address)
        if not relative:
            return 0, None
        cell = self.lake.cell_path(address)
        fs = self.lake.filesystem
        paths = [posixpath.join(cell, r) for r in relative]
        schema = pq.read_schema(paths[0], filesystem=fs)
        key = _key_column(schema)
        values = targets.values_for(key) if key else frozenset()
        if not key or not values:
            return 0, key
        value_array = pa.array(sorted(values), pa.string())
        removed = 0
        for path in paths:
            column = pq.read_table(path, columns=[key], filesystem=fs).column(key)
            removed += pc.sum(_match_mask(column, value_array)).as_py() or 0
        if not removed:
            return 0, key
        current = {"subpath": ""}

        def kept_batches() -> Iterator[pa.RecordBatch]:
            for rel, path in zip(relative, paths):
                current["subpath"] = posixpath.dirname(rel)
                for batch in ds.dataset(path, format="parquet", filesystem=fs).to_batches(batch_size=32_768):
                    batch = batch.filter(pc.invert(_match_mask(batch.column(key), value_array)))
                    if batch.num_rows:
                        yield batch

        # write_cell calls split right after taking each batch, so the subpath is the batch's file's.
        self.lake.write_cell(address, kept_batches(), schema, split=lambda batch: {current["subpath"]: batch})
        return removed, key

    def _all_parquet_files(self) -> list[str]:
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        return sorted(
            info.path
            for info in self.lake.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(".parquet")
        )

    def purge(self) -> dict:
        """Delete files no manifest lists (left by a crash) and stale staging, once they are old."""
        fs = self.lake.filesystem
        cutoff = datetime.now(timezone.utc) - self.stale_after
        deleted = 0
        live = set()
        for address in self.cells():
            cell = self.lake.cell_path(address)
            live.update(posixpath.join(cell, r) for r in self._published(address))
            live.add(posixpath.join(cell, MANIFEST_NAME))
        for info in fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True)):
            if info.type != pafs.FileType.File or info.path in live:
                continue
            if info.mtime is None or info.mtime.astimezone(timezone.utc) < cutoff:
                fs.delete_file(info.path)
                deleted += 1
        staging = posixpath.join(self.lake.root.path, STAGING_DIR)
        for info in fs.get_file_info(pafs.FileSelector(staging, recursive=True, allow_not_found=True)):
            if info.type == pafs.FileType.File and (info.mtime is None or info.mtime.astimezone(timezone.utc) < cutoff):
                fs.delete_file(info.path)
                deleted += 1
        return {"deleted_files": deleted}

    def remaining(self, targets: ErasureTargets) -> int:
        files = self._all_parquet_files()
        staging = posixpath.join(self.lake.root.path, STAGING_DIR)
        selector = pafs.FileSelector(staging, recursive=True, allow_not_found=True)
        files += [i.path for i in self.lake.filesystem.get_file_info(selector) if i.path.endswith(".parquet")]
        return _count_matches_in_files(files, self.lake.filesystem, targets)


class IcebergTableOutput(ErasableOutput):
    """An Iceberg table: one batched delete, then expiry of every older snapshot and file purge."""

    kind = "iceberg"

    def __init__(self, catalog: Callable[[], object], identifier: str, orphan_grace: timedelta = timedelta(hours=1)) -> None:
        self._catalog = catalog
        self.identifier = identifier
        self.name = f"iceberg:{identifier}"
        self.orphan_grace = orphan_grace
        self._table = None
        self._loaded = False

    def table(self):
        if not self._loaded:
            from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

            try:
                self._table = self._catalog().load_table(self.identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                self._table = None
            self._loaded = True
        return self._table

    def _key(self) -> str | None:
        table = self.table()
        if table is None:
            return None
        names = table.schema().column_names
        return USER_COLUMN if USER_COLUMN in names else TRACE_COLUMN if TRACE_COLUMN in names else None

    def trace_ids_of(self, user_ids: frozenset[str]) -> set[str]:
        from pyiceberg.expressions import In

        table = self.table()
        if table is None or table.current_snapshot() is None or not user_ids:
            return set()
        names = table.schema().column_names
        if USER_COLUMN not in names or TRACE_COLUMN not in names:
            return set()
        scan = table.scan(row_filter=In(USER_COLUMN, sorted(user_ids)), selected_fields=(TRACE_COLUMN,))
        found: set[str] = set()
        for batch in scan.to_arrow_batch_reader():
            found.update(batch.column(TRACE_COLUMN).to_pylist())
        return {t for t in found if t is not None}

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        from .iceberg import delete_rows

        key = self._key()
        result = OutputErasure(self.name, self.kind, key)
        if key is None or not targets.values_for(key):
            return result
        result.rows_removed_by_cell = delete_rows(
            self.table(), key, targets.values_for(key), {"materializer.operation": "gdpr-erasure"}
        )
        return result

    def purge(self) -> dict:
        from .iceberg import expire_and_purge

        table = self.table()
        if table is None:
            return {}
        return expire_and_purge(table, older_than=None, orphan_grace=self.orphan_grace).as_dict()

    def remaining(self, targets: ErasureTargets) -> int:
        from .iceberg import table_filesystem, table_files

        table = self.table()
        if table is None:
            return 0
        filesystem, _ = table_filesystem(table)
        return _count_matches_in_files(table_files(table), filesystem, targets)


# --------------------------------------------------------------------- registry of outputs


@dataclass
class ErasureEnvironment:
    """What output factories may use to build their outputs."""

    lake: ParquetLake | None = None
    catalog: Callable[[], object] | None = None
    orphan_grace: timedelta = timedelta(hours=1)


OutputFactory = Callable[[ErasureEnvironment], Iterable[ErasableOutput]]
_OUTPUT_FACTORIES: dict[str, OutputFactory] = {}


def register_erasable_output(name: str, factory: OutputFactory) -> None:
    """Register outputs a stage keeps outside the lake datasets and Iceberg tables (e.g. exports).

    Lake datasets and Iceberg tables declared by assets (``lake_dataset`` /
    ``iceberg_table`` metadata) are found without registering.
    """
    _OUTPUT_FACTORIES[name] = factory


def unregister_erasable_output(name: str) -> None:
    _OUTPUT_FACTORIES.pop(name, None)


def registered_outputs(environment: ErasureEnvironment) -> list[ErasableOutput]:
    outputs: list[ErasableOutput] = []
    for name in sorted(_OUTPUT_FACTORIES):
        outputs.extend(_OUTPUT_FACTORIES[name](environment))
    return outputs


# --------------------------------------------------------------------- the run


@dataclass
class ErasureReport:
    audit_id: str | None
    audit_uri: str | None
    users: int
    outputs: dict[str, OutputErasure] = field(default_factory=dict)
    purge: dict[str, dict] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def noop(self) -> bool:
        return self.users == 0

    @property
    def rows_removed(self) -> int:
        return sum(o.rows_removed for o in self.outputs.values())

    def as_metadata(self) -> dict:
        return {
            "users_erased": self.users,
            "rows_removed": self.rows_removed,
            "rows_removed_by_output": {name: o.rows_removed for name, o in sorted(self.outputs.items())},
            "reasons": dict(sorted(self.reasons.items())),
            "audit_record": self.audit_uri or "",
        }


def run_erasure(
    requests: Sequence[ErasureRequest],
    outputs: Sequence[ErasableOutput],
    ledger: ErasureLedger,
    run_id: str = "",
    now: datetime | None = None,
) -> ErasureReport:
    """Erase every pending request from every output, verify, audit, remember. See the module doc."""
    pending = ledger.pending(merge_requests(requests))
    if not pending:
        return ErasureReport(None, None, 0)
    now = now or datetime.now(timezone.utc)
    user_ids = frozenset(r.user_id for r in pending)
    trace_ids: set[str] = set()
    for output in outputs:
        trace_ids |= output.trace_ids_of(user_ids)
    targets = ErasureTargets(user_ids, frozenset(trace_ids))

    results = {output.name: output.erase(targets) for output in outputs}
    purges = {output.name: output.purge() for output in outputs}
    remaining = {output.name: output.remaining(targets) for output in outputs}

    audit_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    complete = not any(remaining.values())
    record = {
        "audit_id": audit_id,
        "run_at": now.isoformat(),
        "run_id": run_id,
        "status": "complete" if complete else "incomplete",
        "salt_id": hashlib.sha256(ledger.salt).hexdigest()[:8],
        "users": [
            {"user_hash": ledger.user_hash(r.user_id), "reason": r.reason, "requested_at": _iso(r.requested_at)}
            for r in sorted(pending, key=lambda r: ledger.user_hash(r.user_id))
        ],
        "trace_ids_found": len(trace_ids),
        "outputs": {name: result.as_dict() for name, result in sorted(results.items())},
        "purge": purges,
        "rows_remaining_after": remaining,
    }
    audit_uri = ledger.write_audit(record)
    if not complete:
        raise ErasureIncompleteError(
            f"rows of erased users remain after the run in {[n for n, c in remaining.items() if c]} "
            f"(audit {audit_uri}); nothing recorded, the next run retries"
        )
    ledger.record(pending, now, audit_id)
    return ErasureReport(
        audit_id,
        audit_uri,
        len(pending),
        results,
        purges,
        dict(Counter(r.reason for r in pending)),
    )
