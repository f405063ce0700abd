"""The bundled sample: reproducible from its generator, and it exercises everything the reader handles."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.consent import SOURCE_REGISTRY, ConsentRegistry, apply_registry
from materializer_assets.lib.normalize import RejectionLog, rows_to_batch
from materializer_assets.lib.slugs import model_slug
from materializer_assets.lib.sources.files import FileTraceReader

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "materializer_assets" / "sample_data"
GENERATOR = REPO_ROOT / "scripts" / "generate_sample_data.py"
DAYS = (date(2026, 4, 16), date(2026, 4, 17), date(2026, 4, 18))
MODELS = {"Qwen/Qwen3-Coder-4B-Instruct", "glm-5-32b", "gpt-4o-mini-2024-07-18"}
PII = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "phone": re.compile(r"\+?\d[\d ()-]{8,}\d"),
    "ip": re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"),
    "api_key": re.compile(r"\bsk-[\w-]{16,}"),
    "card": re.compile(r"4111 1111 1111 1111"),
}


def sample_files(root: Path) -> dict[str, Path]:
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}


def test_regenerating_the_sample_gives_identical_files(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    generated = sample_files(out)
    bundled = {name: path for name, path in sample_files(SAMPLE).items() if name != "README.md"}
    assert sorted(generated) == sorted(bundled)
    for name, path in generated.items():
        if name.endswith(".parquet"):
            new, old = pq.ParquetFile(path), pq.ParquetFile(bundled[name])
            assert new.read().equals(old.read()), name
            if new.metadata.created_by != old.metadata.created_by:
                continue  # the footer names the pyarrow version that wrote it; only then may bytes differ
        assert path.read_bytes() == bundled[name].read_bytes(), f"{name} differs: re-run {GENERATOR.name}"
    assert sum(path.stat().st_size for path in bundled.values()) < 1_000_000


def test_another_seed_gives_another_sample(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path), "--seed", "7"], check=True, timeout=300)
    changed = (tmp_path / "chat" / "support-assistant.jsonl").read_bytes()
    assert changed != (SAMPLE / "chat" / "support-assistant.jsonl").read_bytes()


@pytest.fixture(scope="module")
def sample() -> tuple[list[dict], RejectionLog, dict[date, list]]:
    """Every row of the bundled sample, the merged rejections, and the models of each day."""
    reader = FileTraceReader(str(SAMPLE))
    rows: list[dict] = []
    rejections = RejectionLog(max_examples=1000)
    models_by_day = {}
    for day in DAYS:
        models_by_day[day] = reader.models_on(day)
        for model in models_by_day[day]:
            cell = reader.read_cell(day, model_slug(model))
            rows.extend(row for batch in cell for row in batch.to_pylist())
            rejections.merge(cell.rejections)
    return rows, rejections, models_by_day


def test_sample_spans_three_days_and_awkward_model_names(sample) -> None:
    rows, _, models_by_day = sample
    assert 150 <= len(rows) <= 300
    assert {row["date"] for row in rows} == {day.isoformat() for day in DAYS}
    for day, models in models_by_day.items():
        assert MODELS <= set(models), day
    names = {row["model"] for row in rows}
    assert any(name and ("|" in name or " " in name) for name in names)
    assert None in names  # a trace with no model: partition "unknown"
    per_cell = Counter((row["date"], row["model"]) for row in rows)
    assert all(per_cell[(day.isoformat(), model)] >= 5 for day in DAYS for model in MODELS)


def test_sample_has_every_consent_state_and_spelling(sample) -> None:
    rows, _, _ = sample
    assert {row["consent"] for row in rows} == {True, False, None}
    assert {row["consent_source"] for row in rows} == {"column", "tag", "metadata", "unreadable", "none"}
    spellings = {str(row["metadata"]) for row in rows if row["consent_source"] == "metadata"}
    assert any('"consent_training": "no"' in text or '"consent_training": "0"' in text for text in spellings)


def test_sample_exercises_conversation_shapes(sample) -> None:
    rows, _, _ = sample
    assert any("#turn-2" in (row["observation_id"] or "") for row in rows)  # three-turn chats
    assert any(row["messages"][-1]["tool_calls"] for row in rows)  # replies that call tools
    assert any(message["role"] == "tool" for row in rows for message in row["messages"])
    assert any(row["tools"] for row in rows)
    assert sum(bool(row["contexts"]) for row in rows) >= 10
    assert sum(row["feedback_score"] is not None for row in rows) >= 20
    assert {row["feedback_score"] for row in rows} >= {0.0, 1.0}
    assert any(row["response"] is None for row in rows) and any(row["response"] == "" for row in rows)
    assert any(row["observation_id"] is None and row["source"] == "files" for row in rows)
    assert all(row["user_id"] for row in rows)
    sources = Counter("export" if row["cost_usd"] is not None else "jsonl" for row in rows)
    assert sources["export"] >= 50 and sources["jsonl"] >= 50


def test_sample_contains_pii_everywhere_redaction_looks(sample) -> None:
    rows, _, _ = sample
    texts = {
        "prompt": " ".join(row["prompt"] or "" for row in rows),
        "response": " ".join(row["response"] or "" for row in rows),
        "contexts": " ".join(text for row in rows for text in row["contexts"]),
    }
    everything = " ".join(texts.values())
    for kind, pattern in PII.items():
        assert pattern.search(everything), kind
    assert PII["email"].search(texts["contexts"]) and PII["email"].search(texts["response"])


def test_sample_has_a_duplicate_trace_id_across_files(sample) -> None:
    rows, _, _ = sample
    counts = Counter((row["trace_id"], row["observation_id"]) for row in rows)
    assert any(count > 1 for count in counts.values())


def test_sample_rejections_of_each_malformed_kind(sample) -> None:
    _, rejections, _ = sample
    assert rejections.counts["invalid_utf8"] == 2  # attributed: their cells could still be read
    for reason in ("malformed_json", "not_an_object", "missing_timestamp"):
        assert rejections.unattributed[reason] >= 1, reason
    locations = {example["location"] for example in rejections.examples}
    assert any(location.endswith(".jsonl:" + location.rsplit(":", 1)[-1]) for location in locations)


def test_sample_registry_refuses_more_and_forgets_but_never_overrides_a_refusal(sample) -> None:
    rows, _, _ = sample
    registry = ConsentRegistry.from_csv_text((SAMPLE / "consent_registry.csv").read_text(), "sample")
    before = {row["user_id"]: set() for row in rows}
    for row in rows:
        before[row["user_id"]].add(row["consent"])
    assert True in before["u-0003"] and None in before["u-0009"] | {None}
    # newest row refuses (u-0003, u-0005 revoked; u-0011's "maybe" is a refusal): forgotten, written nowhere
    assert set(registry.forgotten_users()) == {"u-0003", "u-0005", "u-0011"}
    batch = apply_registry(rows_to_batch(rows), registry)
    after = {}
    for user_id, consent, source in zip(
        batch.column("user_id").to_pylist(), batch.column("consent").to_pylist(), batch.column("consent_source").to_pylist()
    ):
        after.setdefault(user_id, set()).add((consent, source))
    assert after["u-0003"] == {(False, SOURCE_REGISTRY)}  # traces said yes; the user revoked
    assert after["u-0005"] == {(False, SOURCE_REGISTRY)}  # granted, later revoked: the withdrawal covers them
    # granted only in the registry, before these traces; a trace that says "maybe" stays unknown
    assert (True, SOURCE_REGISTRY) in after["u-0009"] and after["u-0009"] <= {(True, SOURCE_REGISTRY), (None, "unreadable")}
    assert all(consent is not True for consent, _ in after["u-0004"] | after["u-0008"])  # refusals stay
    assert isinstance(batch, pa.RecordBatch)
