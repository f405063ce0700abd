"""GDPR erasure over real outputs: Parquet lake cells (local and S3), Iceberg tables on real catalogs."""

from __future__ import annotations

import json
import os
import posixpath
import time
from datetime import datetime, timedelta, timezone

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import erasure as er
from materializer_assets.lib import iceberg as ice
from materializer_assets.lib.consent import ConsentRegistry
from materializer_assets.lib.lake import CellAddress
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.stages import split_by_consent
from materializer_assets.lib.storage import resolve
from materializer_tests.lib.helpers import make_batch
from materializer_tests.lib.iceberg_helpers import CATALOG_KINDS, all_files, make_case, parquet_rows_with

T0 = datetime(2026, 4, 1, tzinfo=timezone.utc)
CELLS = [("2026-04-18", "glm-5-32b"), ("2026-04-19", "glm-5-32b"), ("2026-04-18", "qwen-small")]
KEEP = ["keep-1", "keep-2"]


def _cell_rows(day: str, slug: str, tag: str) -> pa.RecordBatch:
    """Rows of two kept users, the user to forget and the listed user; mixed consent for raw."""
    batches = [
        make_batch(2, day=day, model=slug, prefix=f"{tag}-k1", user="keep-1"),
        make_batch(1, day=day, model=slug, prefix=f"{tag}-k2", user="keep-2", consent=False),
        make_batch(2, day=day, model=slug, prefix=f"{tag}-g", user="gone"),
        make_batch(1, day=day, model=slug, prefix=f"{tag}-l", user="listed", consent=None),
    ]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class JsonlExport(er.ErasableOutput):
    """A later stage's output keyed by trace id only (like an export file): erased by trace id."""

    kind = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"export:{os.path.basename(path)}"

    def _rows(self):
        with open(self.path) as handle:
            return [json.loads(line) for line in handle]

    def erase(self, targets):
        rows = self._rows()
        kept = [r for r in rows if r["trace_id"] not in targets.trace_ids]
        with open(self.path, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in kept)
        return er.OutputErasure(self.name, self.kind, "trace_id", {"all": len(rows) - len(kept)} if len(rows) > len(kept) else {})

    def remaining(self, targets):
        return sum(r["trace_id"] in targets.trace_ids for r in self._rows())


@pytest.fixture(params=CATALOG_KINDS)
def world(request, tmp_path):
    """Raw and consented lake cells, an Iceberg table with the consented cells, a JSONL export."""
    case = make_case(request.param, request, tmp_path)
    lake = case.lake()
    catalog = case.catalog()
    table = ice.ensure_table(catalog, ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    export_path = tmp_path / "export.jsonl"
    export = []
    for day, slug in CELLS:
        batch = _cell_rows(day, slug, f"{day}-{slug}")
        lake.write_cell(CellAddress("raw-traces", day, slug), iter([batch]), NORMALIZED_SCHEMA, split=split_by_consent)
        granted = batch.filter(pa.array([c is True for c in batch.column("consent").to_pylist()]))
        consented = CellAddress("langfuse-traces", day, slug)
        lake.write_cell(consented, iter([granted]), NORMALIZED_SCHEMA, split=lambda b: {"consent=true": b})
        ice.replace_cell_from_files(table, ice.Cell(day, slug), ice.ParquetCellFiles.from_dataset(lake.open_cell(consented)))
        export += [{"trace_id": t, "text": "…"} for t in granted.column("trace_id").to_pylist()]
    export_path.write_text("".join(json.dumps(r) + "\n" for r in export))
    return case, lake, export_path


def _outputs(case, lake, export_path):
    return [
        er.LakeDatasetOutput(lake, "raw-traces"),
        er.LakeDatasetOutput(lake, "langfuse-traces"),
        er.IcebergTableOutput(case.catalog, ice.DEFAULT_TABLE),
        JsonlExport(str(export_path)),
    ]


def _registry(*rows) -> ConsentRegistry:
    return ConsentRegistry.from_rows([{"user_id": u, "granted": g, "updated_at": t.isoformat()} for u, g, t in rows])


def _everything(case, lake) -> tuple[list[str], object, list[str], object]:
    """Every file of the lake's datasets, and every file under the table's location."""
    table = case.catalog().load_table(ice.DEFAULT_TABLE)
    table_fs, to_path = ice.table_filesystem(table)
    lake_files = [f for d in ("raw-traces", "langfuse-traces") for f in all_files(lake.filesystem, f"{lake.root.path}/{d}")]
    return lake_files, lake.filesystem, ice.table_files(table), table_fs


# ------------------------------------------------------------------ requests and the ledger


def test_users_whose_newest_registry_row_refuses_are_erasure_requests():
    registry = _registry(
        ("revoked", "true", T0),
        ("revoked", "revoked", T0 + timedelta(days=1)),
        ("refused", "no", T0),
        ("unreadable", "maybe", T0),  # an unreadable value is a refusal
        ("granted", "yes", T0),
        ("re-granted", "no", T0),
        ("re-granted", "yes", T0 + timedelta(days=1)),
    )
    requests = er.requests_from_registry(registry)
    assert [(r.user_id, r.reason, r.requested_at) for r in requests] == [
        ("refused", er.REASON_CONSENT_REVOKED, T0),
        ("revoked", er.REASON_CONSENT_REVOKED, T0 + timedelta(days=1)),
        ("unreadable", er.REASON_CONSENT_REVOKED, T0),
    ]
    assert er.requests_from_registry(None) == []


def test_erasure_lists_in_every_format(tmp_path, s3_bucket):
    (tmp_path / "list.csv").write_text("user_id,requested_at\nu1,2026-05-01T00:00:00Z\n,\nu2,\n")
    (tmp_path / "list.txt").write_text("# one id per line\nu3\n\nu4\n")
    pq.write_table(pa.table({"user_id": ["u5", None]}), tmp_path / "list.parquet")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="gdpr/list.csv", Body=b"user_id\nu6\n")
    assert [(r.user_id, r.requested_at) for r in er.load_erasure_list(str(tmp_path / "list.csv"))] == [
        ("u1", datetime(2026, 5, 1, tzinfo=timezone.utc)),
        ("u2", None),
    ]
    assert [r.user_id for r in er.load_erasure_list(str(tmp_path / "list.txt"))] == ["u3", "u4"]
    assert [r.user_id for r in er.load_erasure_list(str(tmp_path / "list.parquet"))] == ["u5"]
    assert [r.user_id for r in er.load_erasure_list(f"s3://{s3_bucket}/gdpr/list.csv")] == ["u6"]
    assert all(r.reason == er.REASON_ERASURE_REQUEST for r in er.load_erasure_list(str(tmp_path / "list.txt")))
    assert er.load_erasure_list("") == []
    with pytest.raises(er.ErasureListUnavailableError, match="missing.csv"):
        er.load_erasure_list(str(tmp_path / "missing.csv"))


def test_merging_keeps_the_newest_request_per_user():
    old = er.ErasureRequest("u", T0, er.REASON_CONSENT_REVOKED)
    new = er.ErasureRequest("u", T0 + timedelta(days=2), er.REASON_ERASURE_REQUEST)
    untimed = er.ErasureRequest("u", None, er.REASON_ERASURE_REQUEST)
    assert er.merge_requests([old], [new, untimed]) == [new]
    assert er.merge_requests([untimed], [old]) == [old]


def test_the_ledger_hashes_with_a_kept_salt_and_knows_what_is_pending(tmp_path):
    root = resolve(str(tmp_path / "wh"))
    ledger = er.ErasureLedger(root)
    digest = ledger.user_hash("alice")
    assert digest == er.ErasureLedger(root).user_hash("alice")  # salt kept in _erasure/salt
    assert digest != er.ErasureLedger(root, salt="secret").user_hash("alice")
    assert "alice" not in digest and len(digest) == 32
    request = er.ErasureRequest("alice", T0, er.REASON_CONSENT_REVOKED)
    assert ledger.pending([request]) == [request]
    ledger.record([request], T0, "audit-1")
    reread = er.ErasureLedger(root)
    assert reread.pending([request]) == []
    assert reread.is_forgotten("alice") and not reread.is_forgotten("bob")
    newer = er.ErasureRequest("alice", T0 + timedelta(days=1), er.REASON_CONSENT_REVOKED)
    assert reread.pending([newer]) == [newer]  # a newer revocation is erased again
    assert "alice" not in (tmp_path / "wh" / "_erasure" / "state.json").read_text()


# ------------------------------------------------------------------ the run, on every catalog and storage


def test_erasure_removes_users_from_every_output_and_leaves_others(world):
    case, lake, export_path = world
    lake_files, lake_fs, table_files, table_fs = _everything(case, lake)
    kept_before = parquet_rows_with(lake_fs, lake_files, "user_id", KEEP)
    kept_in_table = parquet_rows_with(table_fs, table_files, "user_id", KEEP)
    assert parquet_rows_with(lake_fs, lake_files, "user_id", ["gone", "listed"]) == 9 + 6  # raw + consented

    registry = _registry(("gone", "true", T0), ("gone", "false", T0 + timedelta(days=3)), ("keep-1", "true", T0))
    requests = er.merge_requests(
        er.requests_from_registry(registry), [er.ErasureRequest("listed", None, er.REASON_ERASURE_REQUEST)]
    )
    ledger = er.ErasureLedger(lake.root)
    report = er.run_erasure(requests, _outputs(case, lake, export_path), ledger, run_id="run-1")

    assert report.users == 2 and report.reasons == {er.REASON_CONSENT_REVOKED: 1, er.REASON_ERASURE_REQUEST: 1}
    removed = {name: o.rows_removed_by_cell for name, o in report.outputs.items()}
    assert removed["lake:raw-traces"] == {f"{d}|{s}": 3 for d, s in CELLS}
    assert removed["lake:langfuse-traces"] == {f"{d}|{s}": 2 for d, s in CELLS}
    assert removed[f"iceberg:{ice.DEFAULT_TABLE}"] == {f"{d}|{s}": 2 for d, s in CELLS}
    assert removed["export:export.jsonl"] == {"all": 6}  # found through the trace ids

    # every file we keep, read in full: nothing of theirs, everything of the others
    lake_files, lake_fs, table_files, table_fs = _everything(case, lake)
    assert parquet_rows_with(lake_fs, lake_files, "user_id", ["gone", "listed"]) == 0
    everything = all_files(lake.filesystem, lake.root.path)  # _staging, _erasure, iceberg/ when local, …
    assert parquet_rows_with(lake_fs, everything, "user_id", ["gone", "listed"]) == 0
    assert parquet_rows_with(table_fs, table_files, "user_id", ["gone", "listed"]) == 0
    assert parquet_rows_with(lake_fs, lake_files, "user_id", KEEP) == kept_before
    assert parquet_rows_with(table_fs, table_files, "user_id", KEEP) == kept_in_table
    assert len(case.catalog().load_table(ice.DEFAULT_TABLE).snapshots()) == 1
    assert not any("gone" in line for line in export_path.read_text().splitlines())
    # raw keeps its consent=… layout
    raw = CellAddress("raw-traces", *CELLS[0])
    assert sorted(posixpath.dirname(f) for f in lake.manifest(raw)["files"]) == ["consent=false", "consent=true"]

    # the audit record: hashes, counts per output and cell, never the ids
    (audit,) = ledger.audit_records()
    assert audit["status"] == "complete" and audit["run_id"] == "run-1"
    assert sorted(u["user_hash"] for u in audit["users"]) == sorted(ledger.user_hash(u) for u in ("gone", "listed"))
    assert audit["outputs"]["lake:raw-traces"]["rows_removed"] == 9
    text = json.dumps(audit)
    assert '"gone"' not in text and '"listed"' not in text

    # a second run with nothing new does nothing
    again = er.run_erasure(requests, _outputs(case, lake, export_path), er.ErasureLedger(lake.root))
    assert again.noop and again.audit_uri is None
    assert len(er.ErasureLedger(lake.root).audit_records()) == 1


def test_an_output_that_keeps_rows_fails_the_run_and_records_nothing(tmp_path):
    case = make_case("sqlite", None, tmp_path)
    lake = case.lake()
    lake.write_cell(CellAddress("raw-traces", *CELLS[0]), iter([_cell_rows(*CELLS[0], "x")]), NORMALIZED_SCHEMA)

    class Stubborn(er.ErasableOutput):
        name, kind = "stubborn", "test"

        def erase(self, targets):
            return er.OutputErasure(self.name, self.kind, "user_id")

        def remaining(self, targets):
            return 1

    er.register_erasable_output("stubborn", lambda env: [Stubborn()])
    try:
        outputs = [er.LakeDatasetOutput(lake, "raw-traces")] + er.registered_outputs(er.ErasureEnvironment(lake=lake))
    finally:
        er.unregister_erasable_output("stubborn")
    request = er.ErasureRequest("gone", T0, er.REASON_ERASURE_REQUEST)
    ledger = er.ErasureLedger(lake.root)
    with pytest.raises(er.ErasureIncompleteError, match="stubborn"):
        er.run_erasure([request], outputs, ledger)
    assert er.ErasureLedger(lake.root).pending([request]) == [request]  # retried next time
    assert [a["status"] for a in ledger.audit_records()] == ["incomplete"]


def test_stale_leftovers_in_the_lake_are_purged_fresh_ones_fail_the_run(tmp_path):
    case = make_case("sqlite", None, tmp_path)
    lake = case.lake()
    address = CellAddress("raw-traces", *CELLS[0])
    lake.write_cell(address, iter([make_batch(2, user="keep-1")]), NORMALIZED_SCHEMA)
    stray = os.path.join(lake.cell_path(address), "consent=true", "part-crashed-00000.parquet")
    os.makedirs(os.path.dirname(stray), exist_ok=True)
    pq.write_table(pa.Table.from_batches([make_batch(1, user="gone")]), stray)  # no manifest lists it
    output = er.LakeDatasetOutput(lake, "raw-traces", stale_after=timedelta(hours=1))
    request = er.ErasureRequest("gone", T0, er.REASON_ERASURE_REQUEST)
    with pytest.raises(er.ErasureIncompleteError):  # too fresh to be sure it is not a write in flight
        er.run_erasure([request], [output], er.ErasureLedger(lake.root))
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    report = er.run_erasure([request], [output], er.ErasureLedger(lake.root))
    assert not os.path.exists(stray) and report.purge["lake:raw-traces"]["deleted_files"] == 1
    assert lake.open_cell(address).count_rows() == 2


def test_the_ledger_says_until_when_a_user_was_erased_and_the_policy_never_brings_those_rows_back(tmp_path):
    ledger = er.ErasureLedger(resolve(str(tmp_path / "wh")))
    erased_at = datetime(2026, 4, 18, 12, tzinfo=timezone.utc)
    ledger.record([er.ErasureRequest("gone", T0, er.REASON_CONSENT_REVOKED)], erased_at, "a1")
    reread = er.ErasureLedger(resolve(str(tmp_path / "wh")))  # as another process
    assert reread.erased_until("gone") == erased_at and reread.erased_until("keep-1") is None
    batch = pa.Table.from_batches(
        [make_batch(14, user="gone", prefix="g"), make_batch(1, user="keep-1"), make_batch(1, user=None)]
    ).combine_chunks().to_batches()[0]
    # granted again after the erasure: rows up to 12:00 (g-0 … g-12) stay forgotten, later ones come in
    granted_again = _registry(("gone", "false", T0), ("gone", "true", T0 + timedelta(days=30)))
    policy = er.consent_policy(granted_again, [], reread)
    kept, dropped = policy.apply(batch)
    assert dropped == 13 and [t for t in kept.column("trace_id").to_pylist() if t.startswith("g-")] == ["g-13"]
    listed = er.consent_policy(None, [er.ErasureRequest("keep-1", None, er.REASON_ERASURE_REQUEST)], reread)
    assert listed.apply(batch)[1] == 14


@pytest.mark.parametrize("where", ["published cell", "staging"])
def test_a_file_erasure_cannot_read_fails_the_run_and_records_nothing(tmp_path, where):
    case = make_case("sqlite", None, tmp_path)
    lake = case.lake()
    address = CellAddress("raw-traces", *CELLS[0])
    lake.write_cell(address, iter([_cell_rows(*CELLS[0], "x")]), NORMALIZED_SCHEMA, split=split_by_consent)
    folder = os.path.join(lake.cell_path(address), "consent=true") if where == "published cell" else os.path.join(
        lake.root.path, "_staging", "torn")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "part-torn-00000.parquet"), "wb") as handle:
        handle.write(b"PAR1 not really parquet")  # e.g. a transient read error, or a torn upload
    request = er.ErasureRequest("gone", T0, er.REASON_ERASURE_REQUEST)
    ledger = er.ErasureLedger(lake.root)
    output = er.LakeDatasetOutput(lake, "raw-traces", stale_after=timedelta(hours=1))  # too fresh to purge
    with pytest.raises(er.ErasureVerificationError, match="part-torn"):
        er.run_erasure([request], [output], ledger)
    assert er.ErasureLedger(lake.root).pending([request]) == [request]  # retried next time
    if where == "staging":  # found by the verification after the erase: an audit record says so
        assert [a["status"] for a in ledger.audit_records()] == ["unverified"]
        assert lake.open_cell(address).count_rows() == 4  # the gone user's rows left the published cell
    else:  # found before anything was deleted
        assert ledger.audit_records() == []


def test_a_change_that_is_no_revocation_is_reconciled_into_every_output(world):
    """keep-1 withdrew after these traces and granted again (kept, but these rows are refused now);
    a registry grant that made listed's rows consented disappears. Neither is a forgotten user."""
    case, lake, export_path = world
    granted_by_registry = _registry(("listed", "true", T0))
    for day, slug in CELLS:  # listed's rows, granted by the registry only
        batch = make_batch(1, day=day, model=slug, prefix=f"{day}-{slug}-r", user="listed", consent=None)
        from materializer_assets.lib.consent import apply_registry

        batch = apply_registry(batch, granted_by_registry)
        assert batch.column("consent_source").to_pylist() == ["registry"]
        address = CellAddress("langfuse-traces", day, slug)
        old = pa.Table.from_batches(list(lake.open_cell(address).to_batches()))
        lake.write_cell(address, iter([*old.to_batches(), batch]), NORMALIZED_SCHEMA, split=lambda b: {"consent=true": b})
    registry = _registry(
        ("keep-1", "true", T0), ("keep-1", "false", T0 + timedelta(days=40)), ("keep-1", "true", T0 + timedelta(days=41)),
    )
    ledger = er.ErasureLedger(lake.root)
    policy = er.consent_policy(registry, [], ledger)
    outputs = [
        er.LakeDatasetOutput(lake, "raw-traces", refile=policy),
        er.LakeDatasetOutput(lake, "langfuse-traces"),
        er.IcebergTableOutput(case.catalog, ice.DEFAULT_TABLE),
        JsonlExport(str(export_path)),
    ]
    report = er.run_erasure([], outputs, ledger, run_id="reconcile", policy=policy)
    assert report.users == 0 and report.revoked_rows == 2 * 3 + 3  # keep-1: 2 rows a cell; listed: 1
    removed = {name: o.rows_removed_by_cell for name, o in report.outputs.items()}
    assert removed["lake:langfuse-traces"] == {f"{d}|{s}": 3 for d, s in CELLS}
    assert removed[f"iceberg:{ice.DEFAULT_TABLE}"] == {f"{d}|{s}": 2 for d, s in CELLS}
    assert removed["export:export.jsonl"] == {"all": 6}
    assert report.outputs["lake:raw-traces"].rows_refiled_by_cell == {f"{d}|{s}": 2 for d, s in CELLS}

    lake_files, lake_fs, table_files, table_fs = _everything(case, lake)
    consented = [f for f in lake_files if "/langfuse-traces/" in f]
    assert parquet_rows_with(lake_fs, consented, "user_id", ["keep-1", "listed"]) == 0
    assert parquet_rows_with(table_fs, table_files, "user_id", ["keep-1"]) == 0
    raw_granted = [f for f in lake_files if "/raw-traces/" in f and "/consent=true/" in f]
    raw_refused = [f for f in lake_files if "/raw-traces/" in f and "/consent=false/" in f]
    assert parquet_rows_with(lake_fs, raw_granted, "user_id", ["keep-1"]) == 0
    assert parquet_rows_with(lake_fs, raw_refused, "user_id", ["keep-1"]) == 2 * 3  # refiled, not lost
    assert parquet_rows_with(lake_fs, consented, "user_id", ["keep-2", "gone"]) == 2 * 3  # others untouched
    (audit,) = ledger.audit_records()
    assert audit["status"] == "complete" and audit["revoked_rows"] == 9
    assert sorted(audit["revoked_users"]) == sorted(ledger.user_hash(u) for u in ("keep-1", "listed"))
    assert audit["registry_changes"]["added"] == [ledger.user_hash("keep-1")]
    assert "keep-1" not in json.dumps(audit)
    # nothing changed since: a second run finds nothing
    assert er.run_erasure([], outputs, er.ErasureLedger(lake.root), policy=policy).noop


def test_a_policy_made_before_an_erasure_forgets_the_user_once_the_ledger_records_it(tmp_path):
    """Nobody erased: the policy looks no user up (its fast path). The ledger is asked on every
    batch, so an erasure recorded after the policy was made still applies to the next batch."""
    ledger = er.ErasureLedger(resolve(str(tmp_path / "wh")))
    batch = pa.Table.from_batches(
        [make_batch(3, user="gone", prefix="g"), make_batch(2, user="keep-1"), make_batch(1, user=None)]
    ).combine_chunks().to_batches()[0]
    policy = er.consent_policy(None, [], ledger)
    assert not ledger.has_erasures()
    assert policy.forgotten_mask(batch).to_pylist() == [False] * 6 and policy.apply(batch)[1] == 0
    ledger.record([er.ErasureRequest("gone", T0, er.REASON_CONSENT_REVOKED)], datetime.now(timezone.utc), "a1")
    assert ledger.has_erasures()
    assert policy.forgotten_mask(batch).to_pylist() == [True] * 3 + [False] * 3
    assert policy.apply(batch)[1] == 3
