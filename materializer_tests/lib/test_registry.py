"""Loading the consent registry from CSV, Parquet, S3 and a real Postgres table."""

from __future__ import annotations

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.registry import RegistryUnavailableError, load_registry, redact_url

CSV = "user_id,granted,updated_at\nalice,true,2026-01-01T00:00:00Z\nalice,false,2026-02-01T00:00:00Z\nbob,yes,2026-01-05\n"


def _assert_expected(registry):
    assert [entry.granted for entry in registry.history("alice")] == [True, False]  # every row, oldest first
    assert registry.newest("alice").granted is False and set(registry.forgotten_users()) == {"alice"}
    assert registry.newest("bob").granted is True
    assert registry.newest("carol") is None and registry.history("carol") == ()


def test_csv_file(tmp_path):
    path = tmp_path / "registry.csv"
    path.write_text(CSV)
    _assert_expected(load_registry(str(path)))


def test_parquet_file(tmp_path):
    path = tmp_path / "registry.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["alice", "alice", "bob"],
                "granted": [True, False, True],
                "updated_at": pa.array(["2026-01-01", "2026-02-01", "2026-01-05"]).cast(pa.timestamp("us")),
            }
        ),
        path,
    )
    _assert_expected(load_registry(str(path)))


def test_csv_on_s3(s3_bucket):
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="consent/registry.csv", Body=CSV.encode())
    _assert_expected(load_registry(f"s3://{s3_bucket}/consent/registry.csv"))


def test_postgres_table(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE consent_registry (user_id text, granted boolean, updated_at timestamptz)")
        conn.execute(
            "INSERT INTO consent_registry VALUES ('alice', true, '2026-01-01'), ('alice', false, '2026-02-01'),"
            " ('bob', true, '2026-01-05')"
        )
        conn.execute("CREATE TABLE other_name (user_id text, granted text, updated_at timestamptz)")
        conn.execute("INSERT INTO other_name VALUES ('zed', 'no', now())")
    _assert_expected(load_registry(pg_url))
    assert load_registry(f"{pg_url}?table=other_name").newest("zed").granted is False


def test_unreadable_registries_fail_closed_and_hide_passwords(tmp_path, pg_admin_url):
    with pytest.raises(RegistryUnavailableError, match="missing.csv"):
        load_registry(str(tmp_path / "missing.csv"))
    (tmp_path / "wrong.csv").write_text("uid,ok\n1,1\n")
    with pytest.raises(RegistryUnavailableError, match="lacks columns"):
        load_registry(str(tmp_path / "wrong.csv"))
    with pytest.raises(RegistryUnavailableError) as error:
        load_registry("postgresql://someone:s3cret-pw@127.0.0.1:1/db?table=consent_registry")
    assert "s3cret-pw" not in str(error.value)
    with pytest.raises(RegistryUnavailableError, match="not a valid table name"):
        load_registry(f"{pg_admin_url}?table=x;drop table y")


def test_redact_url():
    assert redact_url("postgresql://u:pw@h:5432/db?table=t") == "postgresql://u@h:5432/db?table=t"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
