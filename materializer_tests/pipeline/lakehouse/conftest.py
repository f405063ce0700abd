"""Fixtures for real Dagster runs of raw_traces → consented_parquet → iceberg_table (+ gdpr_erasure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from materializer_assets.lib.slugs import model_slug

from .traces import DAYS, MODELS, USERS, chat


@pytest.fixture
def source_dir(tmp_path) -> Path:
    """Three days × two models; each user has two traces per cell."""
    folder = tmp_path / "source"
    folder.mkdir()
    with (folder / "traces.jsonl").open("w") as out:
        for day in DAYS:
            for model in MODELS:
                for user, consent in USERS.items():
                    for n in range(2):
                        out.write(json.dumps(chat(f"{day}-{model_slug(model)}-{user}-{n}", user, consent, model, day)) + "\n")
    return folder


@pytest.fixture
def registry_path(tmp_path) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text("user_id,granted,updated_at\nmallory,true,2026-04-01T00:00:00Z\n")
    return path


@pytest.fixture
def erasure_list_path(tmp_path) -> Path:
    path = tmp_path / "forget.csv"
    path.write_text("user_id,requested_at\n")
    return path
