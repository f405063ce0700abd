"""PostgresTraceReader against a real PostgreSQL server (one fresh database per test)."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

import psycopg
import pyarrow as pa
import pytest

from materializer_assets.lib.consent import consent_from_record
from materializer_assets.lib.normalize import MESSAGES_DERIVED, ReadOptions, SourceRecord, build_examples, content_hash, messages_array
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.slugs import model_slug
from materializer_assets.lib.sources.base import SourceUnavailableError
from materializer_assets.lib.sources.postgres import (
    PostgresTraceReader,
    create_traces_table,
    insert_traces,
    cell_query,
    consent_and_tags,
    contexts_array,
    contexts_from_json,
    parse_postgres_url,
    tags_from_json,
)

DAY = date(2026, 4, 18)
QWEN = "Qwen/Qwen3-Coder-4B-Instruct"
GLM = "glm-5-32b"
GPT = "gpt-4o-mini-2024-07-18"
PIPE_COMMA = "team|router,v2"
UNICODE = "modèle-été 🚀"
INJECTION = "it's \"quoted\"'; DROP TABLE traces; --"


def trace_id(number: int) -> str:
    return str(uuid.UUID(int=number))


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def trace(number: int, **columns) -> dict:
    row = {"id": trace_id(number), "timestamp": at(12), "model": GLM, "input": f"question {number}", "output": "answer"}
    row.update(columns)
    return row


def read_rows(reader: PostgresTraceReader, day: date, slug: str) -> list[dict]:
    batches = list(reader.read_cell(day, slug))
    for batch in batches:
        # The normalized schema, marked: every messages value is messages_array(prompt, response)
        assert batch.schema.equals(NORMALIZED_SCHEMA.with_metadata(MESSAGES_DERIVED), check_metadata=True)
        assert batch.column("messages").equals(messages_array(batch.column("prompt"), batch.column("response")))
    return sorted(pa.Table.from_batches(batches, NORMALIZED_SCHEMA).to_pylist(), key=lambda row: row["trace_id"])


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["trace_id"]: row for row in rows}


@pytest.fixture
def traces_url(pg_url: str) -> str:
    # A session time zone far from UTC: day bounds must not depend on it.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'Asia/Kathmandu'")
    create_traces_table(pg_url)
    return pg_url


@pytest.fixture
def reader(traces_url: str):
    with PostgresTraceReader(traces_url) as opened:
        yield opened


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- models and cells


def test_models_on_lists_the_model_names_of_that_day_only(traces_url, reader):
    names = [QWEN, GLM, GPT, PIPE_COMMA, UNICODE, INJECTION, None, ""]
    insert_traces(traces_url, [trace(i, model=name) for i, name in enumerate(names)])
    insert_traces(traces_url, [trace(100, model="other-day-model", timestamp=at(12, day=DAY + timedelta(days=1)))])

    assert reader.models_on(DAY) == sorted(name for name in names if name is not None) + [None]
    assert reader.models_on(DAY + timedelta(days=1)) == ["other-day-model"]


def test_each_cell_holds_exactly_the_rows_of_its_model(traces_url, reader):
    named = [QWEN, GLM, GPT, PIPE_COMMA, UNICODE]
    rows = [trace(i * 10 + k, model=name) for i, name in enumerate(named) for k in range(2)]
    rows += [trace(900, model=None), trace(901, model=""), trace(902, model="  ")]
    insert_traces(traces_url, rows)

    for i, name in enumerate(named):
        slug = model_slug(name)
        cell = read_rows(reader, DAY, slug)
        assert [row["trace_id"] for row in cell] == [trace_id(i * 10), trace_id(i * 10 + 1)]
        assert {row["model"] for row in cell} == {name}
        assert {row["model_slug"] for row in cell} == {slug}
    unknown = read_rows(reader, DAY, "unknown")
    assert [row["trace_id"] for row in unknown] == [trace_id(900), trace_id(901), trace_id(902)]
    assert {row["model"] for row in unknown} == {None}  # blank names are stored as null
    assert {row["model_slug"] for row in unknown} == {"unknown"}


def test_a_row_becomes_one_normalized_example(traces_url, reader):
    metadata = {
        "environment": "production",
        "contexts": ["first document", {"page_content": "second"}, {"content": "third"}, {"text": "fourth"}],
        "tags": ["team-a", "consent:training"],
        "feedback_score": 0.75,
        "cost_usd": 0.0012,
        "input_tokens": 40,
        "output_tokens": 2,
    }
    insert_traces(
        traces_url,
        [
            {
                "id": trace_id(1),
                "timestamp": datetime(2026, 4, 18, 9, 30, 15, 123456),
                "user_id": "user-1",
                "session_id": "session-1",
                "input": "What is 2+2?",
                "output": "4",
                "model": QWEN,
                "latency_ms": 321,
                "token_count": 42,
                "metadata": metadata,
                "user_consent": None,
            }
        ],
    )
    before = datetime.now(timezone.utc)
    [row] = read_rows(reader, DAY, model_slug(QWEN))

    extracted_at = row.pop("extracted_at")
    assert before <= extracted_at <= datetime.now(timezone.utc)
    stored_metadata = row.pop("metadata")
    assert json.loads(stored_metadata) == metadata
    assert row == {
        "trace_id": trace_id(1),
        "observation_id": None,
        "timestamp": datetime(2026, 4, 18, 9, 30, 15, 123456, tzinfo=timezone.utc),
        "date": "2026-04-18",
        "model": QWEN,
        "model_slug": model_slug(QWEN),
        "user_id": "user-1",
        "session_id": "session-1",
        "environment": "production",
        "messages": [
            {"role": "user", "content": "What is 2+2?", "tool_calls": None, "name": None},
            {"role": "assistant", "content": "4", "tool_calls": None, "name": None},
        ],
        "prompt": "What is 2+2?",
        "response": "4",
        "contexts": ["first document", "second", "third", "fourth"],
        "latency_ms": 321,
        "input_tokens": 40,
        "output_tokens": 2,
        "total_tokens": 42,
        "cost_usd": 0.0012,
        "tags": ["team-a", "consent:training"],
        "consent": True,
        "consent_source": "tag",
        "content_hash": content_hash(row["messages"]),
        "source": "postgres",
        "feedback_score": 0.75,
        "tools": None,
    }


def test_rows_at_the_day_bounds_belong_to_the_right_day(traces_url, reader):
    before, after = DAY - timedelta(days=1), DAY + timedelta(days=1)
    insert_traces(
        traces_url,
        [
            trace(1, timestamp=datetime(2026, 4, 17, 23, 59, 59, 999999)),
            trace(2, timestamp=datetime(2026, 4, 18, 0, 0, 0)),
            trace(3, timestamp="2026-04-19T01:59:59.999999+02:00"),  # ISO text with an offset
            trace(4, timestamp=datetime(2026, 4, 19, 0, 0, 0)),
            trace(5, timestamp=None),  # belongs to no day
        ],
    )
    assert [row["trace_id"] for row in read_rows(reader, before, GLM)] == [trace_id(1)]
    assert [row["trace_id"] for row in read_rows(reader, DAY, GLM)] == [trace_id(2), trace_id(3)]
    assert [row["trace_id"] for row in read_rows(reader, after, GLM)] == [trace_id(4)]
    assert [row["date"] for row in read_rows(reader, DAY, GLM)] == ["2026-04-18", "2026-04-18"]


def test_a_timestamptz_column_is_read_in_utc(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE traces (id UUID PRIMARY KEY, timestamp TIMESTAMPTZ, user_id TEXT, session_id TEXT,"
            " input TEXT, output TEXT, model TEXT, latency_ms INT, token_count INT, metadata JSONB, user_consent BOOLEAN)"
        )
        conn.execute(f"ALTER DATABASE \"{conn.info.dbname}\" SET timezone = 'America/Los_Angeles'")
    plus_two = timezone(timedelta(hours=2))
    insert_traces(
        pg_url,
        [
            trace(1, timestamp=datetime(2026, 4, 18, 1, 30, tzinfo=plus_two)),  # 2026-04-17 23:30 UTC
            trace(2, timestamp=datetime(2026, 4, 18, 2, 0, tzinfo=plus_two)),  # 2026-04-18 00:00 UTC
            trace(3, timestamp=datetime(2026, 4, 18, 23, 59, 59, 999999, tzinfo=timezone.utc)),
        ],
    )
    with PostgresTraceReader(pg_url) as reader:
        assert reader.models_on(DAY) == [GLM]
        rows = read_rows(reader, DAY, GLM)
        assert [row["trace_id"] for row in rows] == [trace_id(2), trace_id(3)]
        assert rows[0]["timestamp"] == datetime(2026, 4, 18, 0, 0, tzinfo=timezone.utc)
        assert [row["trace_id"] for row in read_rows(reader, DAY - timedelta(days=1), GLM)] == [trace_id(1)]


def test_an_empty_day_or_cell_yields_nothing(traces_url, reader):
    assert reader.models_on(DAY) == []
    assert list(reader.read_cell(DAY, GLM)) == []
    insert_traces(traces_url, [trace(1)])
    assert list(reader.read_cell(DAY, "unknown")) == []
    assert list(reader.read_cell(DAY, "no-such-model")) == []
    assert list(reader.read_cell(DAY + timedelta(days=1), GLM)) == []


# ---------------------------------------------------------------- consent


CONSENT_CASES = [
    # (user_consent column, metadata, expected consent, expected source)
    (True, {}, True, "column"),
    (False, {"consent_training": "yes", "tags": ["consent:training"]}, False, "column"),
    (None, {}, None, "none"),
    (None, None, None, "none"),
    (None, {"consent_training": "false"}, False, "metadata"),
    (None, {"consent_training": "no"}, False, "metadata"),
    (None, {"consent_training": "0"}, False, "metadata"),
    (None, {"consent_training": ""}, None, "none"),
    (None, {"consent_training": "yes"}, True, "metadata"),
    (None, {"consent_training": " YES\t"}, True, "metadata"),
    (None, {"consent_training": "\u3000Opt-In\u00a0"}, True, "metadata"),
    (None, {"consent_training": "maybe"}, None, "unreadable"),  # present but unreadable: a doubt
    (True, {"consent_training": "maybe"}, None, "unreadable"),  # ... that blocks the column's grant
    (True, {"consent_training": "no"}, False, "metadata"),  # any refusal wins over any grant
    (None, {"consent_training": True}, True, "metadata"),
    (None, {"consent_training": False}, False, "metadata"),
    (None, {"consent_training": 1}, True, "metadata"),
    (None, {"consent_training": 0}, False, "metadata"),
    (None, {"consent_training": 1.0}, True, "metadata"),
    (None, {"consent_training": 2}, None, "unreadable"),
    (None, {"consent_training": ["yes"]}, None, "unreadable"),
    (None, {"consent_training": None}, None, "none"),
    (None, {"tags": ["consent:training"]}, True, "tag"),
    (None, {"tags": [" Consent:Granted "]}, True, "tag"),
    (None, {"tags": ["consent:training", "consent:refused"]}, False, "tag"),
    (None, {"tags": ["no-consent"], "consent_training": "yes"}, False, "tag"),
    (None, {"tags": ["CONSENT:TRA\u0130NING"]}, None, "none"),  # Python lowers İ to "i̇", not "i"
    (None, {"consent_training": "\u0130"}, None, "unreadable"),
    (None, {"tags": ["other"], "consent_training": "no"}, False, "metadata"),
    (None, {"tags": "consent:training"}, None, "none"),  # not an array: no tags
]


def test_consent_follows_column_then_tags_then_metadata(traces_url, reader):
    insert_traces(
        traces_url,
        [trace(i, user_consent=column, metadata=metadata) for i, (column, metadata, _, _) in enumerate(CONSENT_CASES)],
    )
    rows = by_id(read_rows(reader, DAY, GLM))
    for i, (column, metadata, consent, source) in enumerate(CONSENT_CASES):
        row = rows[trace_id(i)]
        assert (row["consent"], row["consent_source"]) == (consent, source), CONSENT_CASES[i]
        # The SQL rules agree with the Python ones every other reader uses.
        assert (row["consent"], row["consent_source"]) == consent_from_record(column, row["tags"], metadata or {})


# ---------------------------------------------------------------- content


def test_null_and_empty_output(traces_url, reader):
    insert_traces(
        traces_url,
        [trace(1, output=None), trace(2, output=""), trace(3, input=None, output="reply"), trace(4, input="", output=None)],
    )
    rows = by_id(read_rows(reader, DAY, GLM))

    def user(content):
        return {"role": "user", "content": content, "tool_calls": None, "name": None}

    def assistant(content):
        return {"role": "assistant", "content": content, "tool_calls": None, "name": None}

    assert rows[trace_id(1)]["messages"] == [user("question 1")]
    assert rows[trace_id(1)]["response"] is None
    assert rows[trace_id(2)]["messages"] == [user("question 2"), assistant("")]
    assert rows[trace_id(2)]["response"] == ""
    assert rows[trace_id(3)]["messages"] == [user(None), assistant("reply")]
    assert rows[trace_id(3)]["prompt"] is None
    assert rows[trace_id(4)]["messages"] == [user("")]
    for row in rows.values():
        assert row["content_hash"] == content_hash(row["messages"])


def test_sql_content_hash_equals_normalize_content_hash(traces_url, reader):
    pairs = [
        ("hello", "world"),
        ("multi\nline\r\nprompt", "tabs\tand\nnewlines\n"),
        ("ünïcödé 🚀 中文", "réponse ✓"),
        ("no answer yet", None),
        (None, "answer without a prompt"),
        ("", ""),
        ("separators \x1f and \x1e inside", "more \x1e"),
    ]
    insert_traces(traces_url, [trace(i, input=prompt, output=reply) for i, (prompt, reply) in enumerate(pairs)])
    rows = by_id(read_rows(reader, DAY, GLM))
    for i, (prompt, reply) in enumerate(pairs):
        messages = [{"role": "user", "content": prompt}]
        if reply is not None:
            messages.append({"role": "assistant", "content": reply})
        assert rows[trace_id(i)]["content_hash"] == content_hash(messages), (prompt, reply)
        if prompt:
            # Same conversation, same key as the file readers (which go through build_examples).
            [example] = build_examples(SourceRecord(
                trace_id="x", observation_id=None, timestamp="2026-04-18T00:00:00Z", model=GLM, messages=prompt,
                output=reply, source="test", extracted_at=datetime.now(timezone.utc), options=ReadOptions(),
            ))
            assert rows[trace_id(i)]["content_hash"] == example["content_hash"]


def test_contexts_tags_and_numbers_from_metadata(traces_url, reader):
    cases = {
        1: {
            "contexts": [
                "a", "", {"page_content": "b"}, {"content": "c"}, {"text": "d"}, {"page_content": "", "text": "e"}
            ]
        },
        2: {"contexts": "not a list", "tags": [1, "kept", "", None]},
        3: {"feedback_score": "5", "cost_usd": "0.1", "input_tokens": "7"},  # strings are not numbers
        4: {"feedback_score": 3, "cost_usd": 0, "input_tokens": 10, "output_tokens": 5},
        5: ["metadata", "that is an array"],
        6: '"a JSON string"',  # JSON text of a string
        7: None,
    }
    insert_traces(traces_url, [trace(number, metadata=metadata, token_count=None) for number, metadata in cases.items()])
    # Numbers beyond float8 must not abort the stream.
    insert_traces(traces_url, [trace(8, metadata='{"feedback_score": 1e400, "cost_usd": 1e-400, "input_tokens": 1e30}')])
    insert_traces(traces_url, [trace(9, token_count=99, metadata={"input_tokens": 10, "output_tokens": 5})])
    rows = by_id(read_rows(reader, DAY, GLM))

    assert rows[trace_id(1)]["contexts"] == ["a", "b", "c", "d", "e"]
    assert rows[trace_id(2)]["contexts"] == []
    assert rows[trace_id(2)]["tags"] == ["kept"]
    assert rows[trace_id(3)]["feedback_score"] is None
    assert rows[trace_id(3)]["cost_usd"] is None
    assert rows[trace_id(3)]["input_tokens"] is None
    assert rows[trace_id(4)]["feedback_score"] == 3.0
    assert rows[trace_id(4)]["cost_usd"] == 0.0
    assert (rows[trace_id(4)]["input_tokens"], rows[trace_id(4)]["output_tokens"]) == (10, 5)
    assert rows[trace_id(4)]["total_tokens"] == 15  # no token_count: input + output
    assert rows[trace_id(9)]["total_tokens"] == 99  # token_count wins
    for number in (5, 6, 7):
        row = rows[trace_id(number)]
        assert (row["contexts"], row["tags"], row["environment"], row["consent_source"]) == ([], [], None, "none")
    assert rows[trace_id(7)]["metadata"] is None
    assert (rows[trace_id(8)]["feedback_score"], rows[trace_id(8)]["cost_usd"], rows[trace_id(8)]["input_tokens"]) == (
        None,
        None,
        None,
    )


def test_a_five_megabyte_output_is_read_whole(traces_url, reader):
    big = ("0123456789abcdef" * 65536 * 5)[: 5 * 2**20]
    insert_traces(traces_url, [trace(1, output=big), trace(2)])
    rows = by_id(read_rows(reader, DAY, GLM))
    assert rows[trace_id(1)]["response"] == big
    assert rows[trace_id(1)]["messages"][1]["content"] == big
    assert rows[trace_id(1)]["content_hash"] == content_hash(rows[trace_id(1)]["messages"])
    assert rows[trace_id(2)]["response"] == "answer"


def test_convert_to_single_turn_changes_nothing(traces_url):
    insert_traces(traces_url, [trace(1), trace(2, output=None)])
    results = []
    for single_turn in (True, False):
        with PostgresTraceReader(traces_url, options=ReadOptions(convert_to_single_turn=single_turn)) as reader:
            results.append([{k: v for k, v in row.items() if k != "extracted_at"} for row in read_rows(reader, DAY, GLM)])
    assert results[0] == results[1]


# ---------------------------------------------------------------- streaming and safety


def test_small_batch_hint_streams_several_batches(traces_url):
    insert_traces(traces_url, [trace(i, timestamp=at(i % 24, i % 60), output="x" * 100) for i in range(3000)])
    with PostgresTraceReader(traces_url, batch_size_hint_bytes=64 * 1024) as reader:
        batches = list(reader.read_cell(DAY, GLM))
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == 3000
    ids = [value for batch in batches for value in batch.column("trace_id").to_pylist()]
    assert sorted(ids) == sorted(trace_id(i) for i in range(3000))
    assert all(batch.schema.equals(NORMALIZED_SCHEMA.with_metadata(MESSAGES_DERIVED), check_metadata=True) for batch in batches)


def test_an_abandoned_stream_leaves_the_reader_usable(traces_url):
    insert_traces(traces_url, [trace(i, output="y" * 200) for i in range(2000)])
    with PostgresTraceReader(traces_url, batch_size_hint_bytes=16 * 1024) as reader:
        stream = iter(reader.read_cell(DAY, GLM))
        assert next(stream).num_rows > 0
        stream.close()  # the consumer stops early
        assert sum(batch.num_rows for batch in reader.read_cell(DAY, GLM)) == 2000


def test_a_hostile_model_name_is_read_safely(traces_url, reader):
    insert_traces(traces_url, [trace(1, model=INJECTION), trace(2, model="O'Brien"), trace(3)])
    assert INJECTION in reader.models_on(DAY)
    [row] = read_rows(reader, DAY, model_slug(INJECTION))
    assert (row["trace_id"], row["model"]) == (trace_id(1), INJECTION)
    [row] = read_rows(reader, DAY, model_slug("O'Brien"))
    assert row["trace_id"] == trace_id(2)
    with psycopg.connect(traces_url) as conn:
        assert conn.execute("SELECT count(*) FROM traces").fetchone()[0] == 3
    # Only the hex of the name reaches SQL.
    query = cell_query('"traces"', "timestamp without time zone", DAY, [INJECTION, None])
    assert "DROP" not in query and INJECTION.encode().hex() in query


def test_a_server_that_goes_away_mid_stream_is_source_unavailable(traces_url):
    # Far more than socket buffers hold, so the stream is still running when the server goes.
    insert_traces(traces_url, [trace(i, output=f"{i} " + "z" * 10_000) for i in range(3000)])
    url = traces_url.replace("postgres@", "postgres:hunter2@") + "?application_name=reader_under_test"
    with PostgresTraceReader(url, batch_size_hint_bytes=16 * 1024) as reader:
        stream = iter(reader.read_cell(DAY, GLM))
        next(stream)
        with psycopg.connect(traces_url, autocommit=True) as admin:
            terminated = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'reader_under_test' AND query LIKE 'COPY (%'"
            ).fetchall()
        assert terminated == [(True,)]
        with pytest.raises(SourceUnavailableError) as error:
            for _ in stream:
                pass
        assert reader.description in str(error.value) and "hunter2" not in str(error.value)


# ---------------------------------------------------------------- connection, URL and table


def test_unreachable_server_names_the_source_without_the_password():
    port = free_port()
    url = f"postgresql://alice:s3cr%40t-pw@127.0.0.1:{port}/traces_db?table=my_traces"
    with PostgresTraceReader(url) as reader:
        for call in (lambda: reader.models_on(DAY), lambda: list(reader.read_cell(DAY, GLM))):
            with pytest.raises(SourceUnavailableError) as error:
                call()
            message = str(error.value)
            assert f"postgresql://alice@127.0.0.1:{port}/traces_db table=my_traces" in message
            assert "s3cr" not in message and "pw" not in message
        assert "s3cr" not in reader.description


def test_missing_database_or_table_or_columns_is_source_unavailable(pg_url):
    missing_database = pg_url.rpartition("/")[0] + "/no_such_database_here"
    with PostgresTraceReader(missing_database) as reader, pytest.raises(SourceUnavailableError, match="no_such_database_here"):
        reader.models_on(DAY)
    with PostgresTraceReader(pg_url, table="no_such_table") as reader:
        with pytest.raises(SourceUnavailableError, match="table=no_such_table.*does not exist"):
            reader.read_cell(DAY, GLM)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute('CREATE TABLE thin (id UUID, "timestamp" TIMESTAMP, model TEXT)')
    with PostgresTraceReader(pg_url, table="thin") as reader:
        with pytest.raises(SourceUnavailableError, match="lacks columns"):
            reader.models_on(DAY)


@pytest.mark.parametrize(
    "table",
    ["traces; DROP TABLE traces", 'bad"name', "a.b.c", "", "1traces", "tr aces", "x" * 64, "public.", "café", "traces\n"],
)
def test_bad_table_names_are_rejected(table):
    with pytest.raises(ValueError, match="invalid table name"):
        PostgresTraceReader("postgresql://postgres@127.0.0.1:5432/db", table=table)
    with pytest.raises(ValueError, match="invalid table name"):
        PostgresTraceReader(f"postgresql://postgres@127.0.0.1:5432/db?table={quote(table)}")


def test_the_url_table_parameter_wins_and_is_not_passed_to_libpq(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA langfuse")
    create_traces_table(pg_url, "langfuse.Traces_Export")
    insert_traces(pg_url, [trace(1)], table="langfuse.Traces_Export")
    url = f"{pg_url}?application_name=materializer&table=langfuse.Traces_Export"
    with PostgresTraceReader(url, table="ignored") as reader:
        assert reader.table == "langfuse.Traces_Export"
        assert reader.description.endswith("table=langfuse.Traces_Export")
        assert [row["trace_id"] for row in read_rows(reader, DAY, GLM)] == [trace_id(1)]
    location = parse_postgres_url(url)
    assert "table=" not in location.libpq_url and "application_name=materializer" in location.libpq_url


def test_description_never_shows_a_password():
    reader = PostgresTraceReader("postgresql://bob:hunter2@db.internal:6543/prod?password=other&sslmode=require")
    assert reader.description == "postgresql://bob@db.internal:6543/prod table=traces"
    assert "hunter2" not in repr(parse_postgres_url("postgresql://bob:hunter2@h/db"))
    assert PostgresTraceReader("postgresql://db.internal/prod").description == (
        "postgresql://db.internal:5432/prod table=traces"
    )


def test_closed_reader_refuses_work(traces_url):
    reader = PostgresTraceReader(traces_url)
    with reader:
        assert reader.models_on(DAY) == []
    with pytest.raises(ValueError, match="closed"):
        reader.models_on(DAY)


# ---------------------------------------------------------------- consent and tags (pure)


@pytest.mark.parametrize(
    "text, tags",
    [
        (None, []),
        ('["app:chat", "consent:training"]', ["app:chat", "consent:training"]),
        ('["a", "", 3, null, {"b": 1}, ["c"], "d"]', ["a", "d"]),  # non-empty strings only, in order
        ('"consent:training"', []),  # not an array
        ('{"consent": true}', []),
        ("[]", []),
    ],
)
def test_tags_from_json(text, tags):
    assert tags_from_json(text) == tags


def test_consent_and_tags_decide_each_row_like_consent_from_record():
    tag_texts = [None, '["consent:training"]', '[" NO-CONSENT ", "consent:true"]', '["app:chat"]', '"consent:true"']
    value_texts = [None, "null", '"yes"', '"Off"', "1", "0.0", "2", '["yes"]', '"\u0130"', "true"]
    rows = [
        (explicit, tags, value)
        for explicit in (True, False, None)
        for tags in tag_texts
        for value in value_texts
    ]
    explicit, tags, values = (pa.array(column, type) for column, type in zip(zip(*rows), (pa.bool_(), pa.string(), pa.string())))
    consent, source, tag_lists = consent_and_tags(explicit, tags, values)
    for index, (explicit_value, tags_text, value_text) in enumerate(rows):
        metadata = {} if value_text is None else {"consent_training": json.loads(value_text)}
        expected = consent_from_record(explicit_value, tags_from_json(tags_text), metadata)
        assert (consent[index].as_py(), source[index].as_py()) == expected, rows[index]
        assert tag_lists[index].as_py() == tags_from_json(tags_text)



STRING_LIST_CONTEXTS = [None, "[]", '["a", "", null, "b"]', '["  ", "line\\nbreak", "\\u00e9t\\u00e9 \\ud83d\\ude00"]', "null"]
MIXED_CONTEXTS = ['[{"page_content": "doc"}, {"text": ""}, 3, ["nested", "list"], true]', '"a bare string"', '{"k": 1}']


@pytest.mark.parametrize("texts", [STRING_LIST_CONTEXTS, STRING_LIST_CONTEXTS + MIXED_CONTEXTS, MIXED_CONTEXTS])
def test_contexts_array_reads_every_row_like_contexts_from_json(texts):
    # Arrays of strings go through Arrow's JSON parser; a batch with anything
    # else falls back to Python per row. Both must give the same lists.
    expected = [contexts_from_json(text) for text in texts]
    assert contexts_array(pa.array(texts, pa.string())).to_pylist() == expected
    assert contexts_array(pa.array(texts, pa.string()).slice(1)).to_pylist() == expected[1:]


def test_contexts_from_json_keeps_document_text_and_drops_empty_items():
    assert contexts_from_json('["a", "", null, "b"]') == ["a", "b"]
    assert contexts_from_json('[{"page_content": "doc"}, {"text": ""}, {"content": "c"}]') == ["doc", "c"]
    assert contexts_from_json('"not a list"') == [] and contexts_from_json(None) == []
