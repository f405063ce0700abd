"""Consent changes after a day was scored reach every copy (issue 14), through real Dagster runs.

The whole graph runs on a JSONL source with the judge test server (so the
score cache exists), then the registry and the erasure list change in every
way the rule knows: a registry grant disappears, a user withdraws after the
day and grants again (kept, but these rows are refused now), a user's newest
row refuses (forgotten), a user is put on the erasure list (forgotten). The
``gdpr_erasure`` job reconciles; every Parquet file of the warehouse and every
event of the Dagster instance is then searched for those users.
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from materializer_assets.lib.erasure import ErasureLedger
from materializer_assets.lib.storage import resolve
from materializer_assets.pipeline.lakehouse.erasure import gdpr_erasure_job
from materializer_assets.resources import ErasureResource, TraceSourceResource

from .test_dataset_assets import _materialize, _records, _resources, _write_source

REGISTRY_GRANT_REMOVED = "carol"  # the trace says nothing; only the registry granted
WITHDREW_AND_CAME_BACK = "user-6"
NEWEST_ROW_REFUSES = "user-7"
ON_THE_ERASURE_LIST = "user-8"
FORGOTTEN = {NEWEST_ROW_REFUSES, ON_THE_ERASURE_LIST}
REVOKED = {REGISTRY_GRANT_REMOVED, WITHDREW_AND_CAME_BACK}


def _texts(users: set[str]) -> set[str]:
    """The answers those users wrote: what must not be in any consented copy (nor in the event log)."""
    return {r["messages"][-1]["content"].split(" [[")[0] for r in _records() if r["user_id"] in users}


def _trace_ids(users: set[str]) -> set[str]:
    return {r["id"] for r in _records() if r["user_id"] in users}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _files_mentioning(warehouse: Path, needles: set[str], skip=lambda path: False) -> dict[str, set[str]]:
    """Every Parquet file under the warehouse (lake, Iceberg data, score cache, exports), read in full:
    which of ``needles`` occur in any of its string values (JSON payloads included)."""
    found: dict[str, set[str]] = {}
    for path in sorted(warehouse.rglob("*.parquet")):
        if skip(path):
            continue
        values = _strings(pq.read_table(path).to_pylist())
        hits = {needle for needle in needles if any(needle == v or needle in v for v in values)}
        if hits:
            found[str(path.relative_to(warehouse))] = hits
    return found


def _raw_refused_folder(path: Path) -> bool:
    return "raw-traces" in path.parts and any(p in ("consent=false", "consent=unknown") for p in path.parts)


def _event_log_text(instance: dg.DagsterInstance) -> str:
    texts = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            texts.append(entry.message or "")
            if entry.dagster_event is not None:
                texts.append(repr(entry.dagster_event.event_specific_data))
    return "\n".join(texts)


def test_consent_changes_after_a_day_was_scored_reach_every_copy(tmp_path, openai_server):
    warehouse = tmp_path / "wh"
    registry = tmp_path / "registry.csv"
    erasure_list = tmp_path / "erase.csv"
    registry.write_text(
        "user_id,granted,updated_at\n"
        f"{REGISTRY_GRANT_REMOVED},true,2026-01-01T00:00:00Z\n"
        f"{WITHDREW_AND_CAME_BACK},true,2026-01-01T00:00:00Z\n"
    )
    erasure_list.write_text("user_id\n")
    resources = {
        **_resources(_write_source(tmp_path / "source"), str(warehouse), openai_server),
        "trace_source": TraceSourceResource(source=str(tmp_path / "source"), consent_registry=str(registry)),
        "erasure": ErasureResource(erasure_list=str(erasure_list), orphan_grace_minutes=60),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(resources, instance).success
    everyone = REVOKED | FORGOTTEN
    before = _files_mentioning(warehouse, _trace_ids(everyone))
    assert any("reward" in path for path in before) and any("score-cache" in path for path in before)
    # the registry-only grant made carol's trace a reward row
    assert any(_trace_ids({REGISTRY_GRANT_REMOVED}) & hits for path, hits in before.items() if "reward-dataset" in path)

    # Revocations after the day was scored.
    registry.write_text(
        "user_id,granted,updated_at\n"
        f"{WITHDREW_AND_CAME_BACK},true,2026-01-01T00:00:00Z\n"
        f"{WITHDREW_AND_CAME_BACK},false,2026-05-01T00:00:00Z\n"
        f"{WITHDREW_AND_CAME_BACK},true,2026-06-01T00:00:00Z\n"
        f"{NEWEST_ROW_REFUSES},true,2026-01-01T00:00:00Z\n"
        f"{NEWEST_ROW_REFUSES},false,\n"  # undated refusal: the newest row
    )
    erasure_list.write_text(f"user_id\n{ON_THE_ERASURE_LIST}\n")
    result = gdpr_erasure_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert result.success

    needles = _trace_ids(everyone) | _texts(everyone) | FORGOTTEN
    # Nothing of theirs anywhere but raw's consent=false|unknown folders ...
    assert _files_mentioning(warehouse, needles, skip=_raw_refused_folder) == {}
    # ... and of the forgotten, not even there; the revoked are refiled there, not lost.
    assert _files_mentioning(warehouse, _trace_ids(FORGOTTEN) | FORGOTTEN) == {}
    refiled = _files_mentioning(warehouse, _trace_ids(REVOKED))
    assert refiled and all(_raw_refused_folder(warehouse / path) for path in refiled)
    # Every granted row of everyone else is still there.
    kept = {r["id"] for r in _records() if r["consent"] is True and r["user_id"] not in everyone}
    reward_files = [p for p in (warehouse / "reward-dataset").rglob("*.parquet")]
    reward_ids = {t for p in reward_files for t in pq.read_table(p, columns=["trace_id"]).column("trace_id").to_pylist()}
    assert reward_ids == kept

    ledger = ErasureLedger(resolve(str(warehouse)))
    (audit,) = [a for a in ledger.audit_records() if a["status"] == "complete" and a["users"]]
    assert {u["user_hash"] for u in audit["users"]} == {ledger.user_hash(u) for u in FORGOTTEN}
    assert set(audit["revoked_users"]) == {ledger.user_hash(u) for u in REVOKED}
    assert not any(user in json.dumps(audit) for user in everyone)

    # The Dagster event log holds counts and hashes only: none of their words, none of anyone's ids.
    log = _event_log_text(instance)
    assert not [text for text in _texts(everyone) if text in log]
    assert not [user for user in everyone if f"'{user}'" in log or f'"{user}"' in log]

    # Re-running the cell brings none of it back.
    assert _materialize(resources, instance).success
    assert _files_mentioning(warehouse, needles, skip=_raw_refused_folder) == {}
    assert _files_mentioning(warehouse, _trace_ids(FORGOTTEN) | FORGOTTEN) == {}
    rerun_ids = {t for p in (warehouse / "reward-dataset").rglob("*.parquet")
                 for t in pq.read_table(p, columns=["trace_id"]).column("trace_id").to_pylist()}
    assert rerun_ids == kept


def test_scoring_and_rewards_decide_consent_again_before_any_reconciliation(tmp_path, openai_server):
    """A user put on the erasure list after iceberg_table was written: scores and rewards re-run
    before the erasure job ran leave them out (each stage applies today's policy)."""
    from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key

    from .test_dataset_assets import ASSETS, DAY, MODEL

    warehouse = tmp_path / "wh"
    erasure_list = tmp_path / "erase.csv"
    erasure_list.write_text("user_id\n")
    resources = {
        **_resources(_write_source(tmp_path / "source"), str(warehouse), openai_server),
        "erasure": ErasureResource(erasure_list=str(erasure_list)),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(resources, instance).success
    erasure_list.write_text(f"user_id\n{ON_THE_ERASURE_LIST}\n")
    downstream = [a for a in ASSETS if not {k.to_user_string() for k in a.keys} & {"raw_traces", "consented_parquet", "iceberg_table"}]
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    result = dg.materialize(
        ASSETS, selection=downstream, partition_key=cell_key(DAY, MODEL), resources=resources, instance=instance,
        raise_on_error=False,
    )
    assert result.success
    gone = _trace_ids({ON_THE_ERASURE_LIST})
    for dataset_name in ("judge-scores", "ragas-scores", "reward-dataset", "exports"):
        assert list((warehouse / dataset_name).rglob("*.parquet")), dataset_name
        found = _files_mentioning(warehouse / dataset_name, gone)
        assert found == {}, (dataset_name, found)
    # the erasure job then removes them from the upstream copies too
    assert gdpr_erasure_job.execute_in_process(resources=resources, instance=instance).success
    assert _files_mentioning(warehouse, gone | {ON_THE_ERASURE_LIST}) == {}
