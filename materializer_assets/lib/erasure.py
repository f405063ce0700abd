"""GDPR erasure and consent reconciliation: every output made to agree with today's decisions.

Who is erased (an :class:`ErasureRequest` each):

- users whose newest consent-registry row refuses (revoked, refused or
  unreadable; see :mod:`.consent`), and
- users on an erasure list (``MATERIALIZER_ERASURE_LIST``: CSV with a
  ``user_id`` column and optionally ``requested_at``, Parquet with the same
  columns, or plain text with one id per line).

A request is *pending* until a run erased it; the ledger
(``<warehouse>/_erasure/state.json``) remembers, per salted hash of the user id,
the newest request time already handled and when it was erased (rows up to
then never come back: :meth:`ErasureLedger.erased_until`). A new revocation
with a newer timestamp is pending again; a second run with nothing new is a no-op.

What else is revoked (with a :class:`~.consent.ConsentPolicy`): rows an output
still holds as granted that the policy no longer grants, although their user
is kept (a withdrawal after a re-grant, a registry grant removed or turned
unreadable). They leave every consented output; ``raw_traces`` refiles them
under ``consent=false|unknown``.

Where from: every :class:`ErasableOutput` — the Parquet lake datasets
(``raw-traces``, ``langfuse-traces`` and any other ``lake_dataset``), every
Iceberg table, and whatever later stages register with
:func:`register_erasable_output` (exports, the score cache). An output keyed
by user erases by ``user_id`` (and revoked ``(user_id, trace_id)`` pairs); one
without that column erases by the ``trace_id``s the other outputs hold for them.

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
   (not just the live ones): any remaining row, or a file that cannot be read,
   fails the run and nothing is recorded, so the next run retries;
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

from .consent import ConsentPolicy, ConsentRegistry, _parse_time, apply_registry, granted_mask
from .lake import MANIFEST_NAME, STAGING_DIR, CellAddress, CellNotMaterialized, ParquetLake, keep_fixed_subpaths
from .stages import CONSENT_SUBPATHS, split_by_consent
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


class ErasureVerificationError(ErasureIncompleteError):
    """A file erasure must check cannot be read: the run fails, nothing is recorded as done."""


# --------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ErasureRequest:
    user_id: str
    requested_at: datetime | None
    reason: str


def requests_from_registry(registry: ConsentRegistry | None) -> list[ErasureRequest]:
    """Users whose newest registry row refuses (an unreadable or undated refusal counts as newest)."""
    if registry is None:
        return []
    return [
        ErasureRequest(user_id, entry.updated_at, REASON_CONSENT_REVOKED)
        for user_id, entry in registry.forgotten_users().items()
    ]


def consent_policy(
    registry: ConsentRegistry | None, erasure_list: Iterable[ErasureRequest], ledger: "ErasureLedger"
) -> ConsentPolicy:
    """The policy every stage applies: the registry, the erasure list, and what the ledger already erased."""
    return ConsentPolicy(
        registry, (request.user_id for request in erasure_list), ledger.erased_until, ledger.has_erasures
    )


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

    def has_erasures(self) -> bool:
        """Whether any user was erased yet (read now: the ledger may record one meanwhile)."""
        return bool(self.state["users"])

    def erased_until(self, user_id: str) -> datetime | None:
        """When an erasure removed ``user_id`` (None: never): their rows up to then never come back,
        even once they consent again (see :class:`~.consent.ConsentPolicy`)."""
        erased = self.state["users"].get(self.user_hash(user_id)) if self.state["users"] else None
        if erased is None:
            return None
        return _parse_time(erased.get("erased_at")) or datetime.max.replace(tzinfo=timezone.utc)

    def registry_changes(self, registry: ConsentRegistry | None) -> dict[str, list[str]]:
        """Hashes of the users whose registry history was added, changed or removed since
        the last complete run (what the audit record says changed)."""
        before = self.state.get("registry", {})
        now = self.registry_digests(registry)
        return {
            "added": sorted(set(now) - set(before)),
            "changed": sorted(h for h in set(now) & set(before) if now[h] != before[h]),
            "removed": sorted(set(before) - set(now)),
        }

    def registry_digests(self, registry: ConsentRegistry | None) -> dict[str, str]:
        if registry is None:
            return {}
        return {self.user_hash(user_id): registry.user_digest(user_id) for user_id in registry.user_ids()}

    def record(
        self,
        requests: Iterable[ErasureRequest],
        erased_at: datetime,
        audit_id: str,
        registry: ConsentRegistry | None = None,
    ) -> None:
        """Remember the erased users and (hashed) the registry this run reconciled."""
        self.state["registry"] = self.registry_digests(registry)
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
    """What a run removes.

    ``user_ids``: forgotten users, every row of theirs goes. ``revoked``:
    ``(user_id, trace_id)`` of rows that are no longer granted although their
    user is kept (a withdrawal after a re-grant, a grant removed or turned
    unreadable): they leave every consented output (raw files them under
    ``consent=false|unknown``). ``trace_ids``: every trace of either, for
    outputs keyed only by trace.
    """

    user_ids: frozenset[str]
    trace_ids: frozenset[str] = frozenset()
    revoked: frozenset[tuple[str, str]] = frozenset()

    def values_for(self, column: str) -> frozenset[str]:
        return self.user_ids if column == USER_COLUMN else self.trace_ids

    @property
    def empty(self) -> bool:
        return not (self.user_ids or self.trace_ids or self.revoked)

    def columns_for(self, names: Sequence[str]) -> list[str]:
        """The columns :meth:`mask` reads from rows with these column names."""
        if USER_COLUMN in names:
            return [USER_COLUMN, TRACE_COLUMN] if (self.revoked and TRACE_COLUMN in names) else [USER_COLUMN]
        return [TRACE_COLUMN] if TRACE_COLUMN in names else []

    def mask(self, rows: pa.RecordBatch | pa.Table) -> pa.Array:
        """True for targeted rows: by user (and revoked (user, trace) pairs) where rows have
        ``user_id``, else by ``trace_id``; all False for rows with neither."""
        names = rows.schema.names
        if USER_COLUMN in names:
            users = rows.column(USER_COLUMN)
            mask = _match_mask(users, pa.array(sorted(self.user_ids), pa.string()))
            if self.revoked and TRACE_COLUMN in names:
                pairs = pc.binary_join_element_wise(users, rows.column(TRACE_COLUMN), "\x00")
                wanted = pa.array(sorted(f"{u}\x00{t}" for u, t in self.revoked), pa.string())
                mask = pc.or_(mask, _match_mask(pairs, wanted))
            return mask
        if TRACE_COLUMN in names:
            return _match_mask(rows.column(TRACE_COLUMN), pa.array(sorted(self.trace_ids), pa.string()))
        return pa.array([False] * rows.num_rows, pa.bool_())

    def iceberg_filter(self, names: Sequence[str]):
        """The same rows as :meth:`mask`, as one pyiceberg expression (None: nothing to delete)."""
        from pyiceberg.expressions import AlwaysFalse, And, In, Or

        expression = AlwaysFalse()
        if USER_COLUMN in names:
            if self.user_ids:
                expression = Or(expression, In(USER_COLUMN, sorted(self.user_ids)))
            if self.revoked and TRACE_COLUMN in names:
                users = sorted({u for u, _ in self.revoked})
                traces = sorted({t for _, t in self.revoked})
                # A superset of the pairs only where two revoked users share a trace id: never fewer rows.
                expression = Or(expression, And(In(USER_COLUMN, users), In(TRACE_COLUMN, traces)))
        elif TRACE_COLUMN in names and self.trace_ids:
            expression = In(TRACE_COLUMN, sorted(self.trace_ids))
        return None if isinstance(expression, AlwaysFalse) else expression


@dataclass
class OutputErasure:
    output: str
    kind: str
    key_column: str | None
    rows_removed_by_cell: dict[str, int] = field(default_factory=dict)
    # raw only: rows of kept users filed again under consent=false|unknown
    rows_refiled_by_cell: dict[str, int] = field(default_factory=dict)

    @property
    def rows_removed(self) -> int:
        return sum(self.rows_removed_by_cell.values())

    def as_dict(self) -> dict:
        result = {
            "kind": self.kind,
            "key_column": self.key_column,
            "rows_removed": self.rows_removed,
            "rows_removed_by_cell": dict(sorted(self.rows_removed_by_cell.items())),
        }
        if self.rows_refiled_by_cell:
            result["rows_refiled_by_cell"] = dict(sorted(self.rows_refiled_by_cell.items()))
        return result


class ErasableOutput(ABC):
    """Somewhere user data is kept. Later stages subclass this for their own outputs."""

    name: str
    kind: str

    def trace_ids_of(self, user_ids: frozenset[str]) -> set[str]:
        """Trace ids this output holds for ``user_ids`` (for outputs keyed only by trace)."""
        return set()

    def revoked_rows(self, policy: ConsentPolicy) -> set[tuple[str, str]]:
        """``(user_id, trace_id)`` of rows this output holds as granted that ``policy`` no
        longer grants (outputs that record consent; others return nothing)."""
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


def _count_matches_in_files(
    paths: Iterable[str],
    filesystem: pafs.FileSystem,
    targets: ErasureTargets,
    targets_for: Callable[[str], ErasureTargets] | None = None,
) -> int:
    """Targeted rows in every Parquet file of ``paths`` (``targets_for(path)`` may narrow the
    targets per file). Fails closed: a Parquet file that cannot be read raises
    :class:`ErasureVerificationError`, it is never skipped."""
    found = 0
    for path in paths:
        if not path.endswith(".parquet"):
            continue  # Iceberg metadata and manifests: kept free of ids by their metrics settings
        file_targets = targets_for(path) if targets_for is not None else targets
        try:
            schema = pq.read_schema(path, filesystem=filesystem)
            # The same rows erase() removes: by user_id where there is one (trace ids are only unique per source).
            columns = file_targets.columns_for(schema.names)
            if not columns:
                continue
            table = pq.read_table(path, columns=columns, filesystem=filesystem)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ErasureVerificationError(f"cannot verify {path}: {exc}") from exc
        found += pc.sum(file_targets.mask(table)).as_py() or 0
    return found


REVOCATION_COLUMNS = (USER_COLUMN, TRACE_COLUMN, "timestamp", "consent", "consent_source")


def _revoked_in(batch: pa.RecordBatch, policy: ConsentPolicy) -> set[tuple[str, str]]:
    """Granted rows of ``batch`` that ``policy`` forgets or no longer grants."""
    batch = batch.filter(granted_mask(batch))
    if batch.num_rows == 0:
        return set()
    forgotten = policy.forgotten_mask(batch)
    decided = apply_registry(batch, policy.registry)  # same rows, consent decided again
    lost = pc.or_(forgotten, pc.invert(granted_mask(decided)))
    lost_rows = batch.filter(lost)
    return {
        (user, trace)
        for user, trace in zip(lost_rows.column(USER_COLUMN).to_pylist(), lost_rows.column(TRACE_COLUMN).to_pylist())
        if user is not None and trace is not None
    }


class LakeDatasetOutput(ErasableOutput):
    """A dataset of the Parquet lake (``<warehouse>/<dataset>/date=D/model=M/…``).

    With ``refile`` (raw_traces, whose cells keep every consent state), a kept
    user's revoked rows are not removed but filed again under
    ``consent=false|unknown``: the cell is rewritten with ``refile``'s decisions.
    """

    kind = "parquet_lake"

    def __init__(
        self,
        lake: ParquetLake,
        dataset: str,
        stale_after: timedelta = timedelta(hours=1),
        refile: ConsentPolicy | None = None,
    ) -> None:
        self.lake = lake
        self.dataset = dataset
        self.name = f"lake:{dataset}"
        self.stale_after = stale_after
        self.refile = refile

    def _targets_for(self, targets: ErasureTargets) -> Callable[[str], ErasureTargets]:
        """In a refiled dataset, revoked rows are targets only in ``consent=true`` files."""
        if self.refile is None:
            return lambda path: targets
        users_only = ErasureTargets(targets.user_ids)
        granted_folder = f"/{CONSENT_SUBPATHS[0]}/"
        return lambda path: targets if granted_folder in path else users_only

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
            try:
                schema = pq.read_schema(path, filesystem=self.lake.filesystem)
                if USER_COLUMN not in schema.names or TRACE_COLUMN not in schema.names:
                    continue
                table = pq.read_table(path, columns=[USER_COLUMN, TRACE_COLUMN], filesystem=self.lake.filesystem)
            except (OSError, pa.ArrowInvalid) as exc:  # a trace missed here would stay in trace-keyed outputs
                raise ErasureVerificationError(f"cannot read {path}: {exc}") from exc
            found.update(table.filter(_match_mask(table.column(USER_COLUMN), values)).column(TRACE_COLUMN).to_pylist())
        return {t for t in found if t is not None}

    def revoked_rows(self, policy: ConsentPolicy) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for address in self.cells():
            cell = self.lake.cell_path(address)
            for relative in self._published(address):
                path = posixpath.join(cell, relative)
                if not set(REVOCATION_COLUMNS) <= set(pq.read_schema(path, filesystem=self.lake.filesystem).names):
                    return set()  # this dataset does not record consent
                table = pq.read_table(path, columns=list(REVOCATION_COLUMNS), filesystem=self.lake.filesystem)
                for batch in table.to_batches():
                    found |= _revoked_in(batch, policy)
        return found

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        result = OutputErasure(self.name, self.kind, None)
        for address in self.cells():
            removed, refiled, key = self._erase_cell(address, targets)
            if key:
                result.key_column = result.key_column or key
            if removed:
                result.rows_removed_by_cell[f"{address.date}|{address.model_slug}"] = removed
            if refiled:
                result.rows_refiled_by_cell[f"{address.date}|{address.model_slug}"] = refiled
        return result

    def _erase_cell(self, address: CellAddress, targets: ErasureTargets) -> tuple[int, int, str | None]:
        """(rows removed, rows refiled, key column) of one cell, rewritten only if it holds targets."""
        relative = self._published(address)
        if not relative:
            return 0, 0, None
        cell = self.lake.cell_path(address)
        fs = self.lake.filesystem
        paths = [posixpath.join(cell, r) for r in relative]
        schema = pq.read_schema(paths[0], filesystem=fs)
        key = _key_column(schema)
        if key is None or targets.empty:
            return 0, 0, key
        matched = _count_matches_in_files(paths, fs, targets, self._targets_for(targets))
        if not matched:
            return 0, 0, key
        counts = Counter()
        current = {"subpath": ""}

        def kept_batches() -> Iterator[pa.RecordBatch]:
            for rel, path in zip(relative, paths):
                current["subpath"] = posixpath.dirname(rel)
                # Refiling: only forgotten users' rows go; the policy files revoked rows under consent=false|unknown.
                file_targets = ErasureTargets(targets.user_ids) if self.refile is not None else targets
                for batch in ds.dataset(path, format="parquet", filesystem=fs).to_batches(batch_size=32_768):
                    targeted = file_targets.mask(batch)
                    counts["removed"] += pc.sum(targeted).as_py() or 0
                    batch = batch.filter(pc.invert(targeted))
                    if self.refile is not None:
                        granted = pc.sum(granted_mask(batch)).as_py() or 0
                        batch, forgotten = self.refile.apply(batch)
                        counts["removed"] += forgotten
                        counts["refiled"] += max(granted - forgotten - (pc.sum(granted_mask(batch)).as_py() or 0), 0)
                    if batch.num_rows:
                        yield batch

        # A refiled cell is split by the decisions made again; any other keeps each file's folder
        # (write_cell calls split right after taking each batch, so the subpath is the batch's file's).
        # Sub-folders every version has (an export's train/ and test/) stay, empty or not.
        split = split_by_consent if self.refile is not None else (lambda batch: {current["subpath"]: batch})
        self.lake.write_cell(address, kept_batches(), schema, split=keep_fixed_subpaths(split, self.lake.manifest(address)))
        return counts["removed"], counts["refiled"], key

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
        return _count_matches_in_files(files, self.lake.filesystem, targets, self._targets_for(targets))


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
        from .iceberg.reading import stream_scan

        scan = table.scan(row_filter=In(USER_COLUMN, sorted(user_ids)), selected_fields=(TRACE_COLUMN,))
        found: set[str] = set()
        for batch in stream_scan(scan):
            found.update(batch.column(TRACE_COLUMN).to_pylist())
        return {t for t in found if t is not None}

    def revoked_rows(self, policy: ConsentPolicy) -> set[tuple[str, str]]:
        from pyiceberg.expressions import EqualTo

        table = self.table()
        if table is None or table.current_snapshot() is None:
            return set()
        if not set(REVOCATION_COLUMNS) <= set(table.schema().column_names):
            return set()
        from .iceberg.reading import stream_scan

        scan = table.scan(row_filter=EqualTo("consent", True), selected_fields=REVOCATION_COLUMNS)
        found: set[tuple[str, str]] = set()
        for batch in stream_scan(scan):
            found |= _revoked_in(batch, policy)
        return found

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        from .iceberg.base import _commit_attempts
        from .iceberg.reading import stream_scan

        key = self._key()
        result = OutputErasure(self.name, self.kind, key)
        table = self.table()
        predicate = targets.iceberg_filter(table.schema().column_names) if key is not None else None
        if predicate is None or table.current_snapshot() is None:
            return result
        counts: Counter = Counter()
        for batch in stream_scan(table.scan(row_filter=predicate, selected_fields=("date", "model_slug"))):
            for day, slug in zip(batch.column("date").to_pylist(), batch.column("model_slug").to_pylist()):
                counts[f"{day}|{slug}"] += 1
        if not counts:
            return result
        # One copy-on-write delete for the whole run (DESIGN §5).
        for attempt in _commit_attempts():
            with attempt:
                table.refresh()
                table.delete(predicate, snapshot_properties={"materializer.operation": "gdpr-erasure"})
        result.rows_removed_by_cell = dict(counts)
        return result

    def purge(self) -> dict:
        from .iceberg.erasure import expire_and_purge

        table = self.table()
        if table is None:
            return {}
        return expire_and_purge(table, older_than=None, orphan_grace=self.orphan_grace).as_dict()

    def remaining(self, targets: ErasureTargets) -> int:
        from .iceberg.erasure import table_files
        from .iceberg.tables import table_filesystem

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
    revoked_rows: int = 0  # rows of kept users no longer granted

    @property
    def noop(self) -> bool:
        return self.users == 0 and self.revoked_rows == 0

    @property
    def rows_removed(self) -> int:
        return sum(o.rows_removed for o in self.outputs.values())

    def as_metadata(self) -> dict:
        return {
            "users_erased": self.users,
            "rows_revoked": self.revoked_rows,
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
    policy: ConsentPolicy | None = None,
) -> ErasureReport:
    """Reconcile every output with the consent decisions of now. See the module doc.

    Pending requests (forgotten users) lose every row; with ``policy``, rows any
    output still holds as granted that the policy no longer grants (a withdrawal
    after a re-grant, a grant removed or turned unreadable) leave every consented
    output, and raw files them under ``consent=false|unknown``.
    """
    pending = ledger.pending(merge_requests(requests))
    user_ids = frozenset(r.user_id for r in pending)
    changes = ledger.registry_changes(policy.registry) if policy is not None else {}
    # Every stage applies the policy when it writes, so only a registry that changed since the last
    # complete run (or a first run) can have left granted rows behind: then every output is scanned.
    scan = policy is not None and (any(changes.values()) or "registry" not in ledger.state)
    revoked: set[tuple[str, str]] = set()
    if scan:
        for output in outputs:
            revoked |= output.revoked_rows(policy)
    revoked = {(user, trace) for user, trace in revoked if user not in user_ids}
    if not pending and not revoked:
        if scan:
            ledger.record([], now or datetime.now(timezone.utc), "", policy.registry)  # nothing to remove
        return ErasureReport(None, None, 0)
    now = now or datetime.now(timezone.utc)
    trace_ids: set[str] = {trace for _, trace in revoked}
    for output in outputs:
        trace_ids |= output.trace_ids_of(user_ids)
    targets = ErasureTargets(user_ids, frozenset(trace_ids), frozenset(revoked))

    results = {output.name: output.erase(targets) for output in outputs}
    purges = {output.name: output.purge() for output in outputs}
    audit_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    record = {
        "audit_id": audit_id,
        "run_at": now.isoformat(),
        "run_id": run_id,
        "salt_id": hashlib.sha256(ledger.salt).hexdigest()[:8],
        "registry_changes": changes,
        "users": [
            {"user_hash": ledger.user_hash(r.user_id), "reason": r.reason, "requested_at": _iso(r.requested_at)}
            for r in sorted(pending, key=lambda r: ledger.user_hash(r.user_id))
        ],
        "revoked_rows": len(revoked),
        "revoked_users": sorted({ledger.user_hash(user) for user, _ in revoked}),
        "trace_ids_found": len(trace_ids),
        "outputs": {name: result.as_dict() for name, result in sorted(results.items())},
        "purge": purges,
    }
    try:
        remaining = {output.name: output.remaining(targets) for output in outputs}
    except ErasureVerificationError as exc:
        record.update(status="unverified", verification_error=str(exc).split(":")[0])
        audit_uri = ledger.write_audit(record)
        raise ErasureVerificationError(f"{exc} (audit {audit_uri}); nothing recorded, the next run retries") from exc
    complete = not any(remaining.values())
    record.update(status="complete" if complete else "incomplete", rows_remaining_after=remaining)
    audit_uri = ledger.write_audit(record)
    if not complete:
        raise ErasureIncompleteError(
            f"rows of erased users remain after the run in {[n for n, c in remaining.items() if c]} "
            f"(audit {audit_uri}); nothing recorded, the next run retries"
        )
    ledger.record(pending, now, audit_id, policy.registry if policy is not None else None)
    return ErasureReport(
        audit_id,
        audit_uri,
        len(pending),
        results,
        purges,
        dict(Counter(r.reason for r in pending)),
        revoked_rows=len(revoked),
    )
