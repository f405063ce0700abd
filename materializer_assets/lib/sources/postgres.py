"""Read the ``traces`` table of a PostgreSQL database (DESIGN §2).

The table of the design document::

    CREATE TABLE traces (id UUID PRIMARY KEY, timestamp TIMESTAMP, user_id TEXT,
        session_id TEXT, input TEXT, output TEXT, model TEXT, latency_ms INT,
        token_count INT, metadata JSONB, user_consent BOOLEAN);

``timestamp`` without a time zone is read as UTC; a ``timestamptz`` column
works too.

How a cell is read, and why:

* **Streaming with ADBC.** Rows arrive as Arrow record batches through
  ``cursor.fetch_record_batch()`` (binary COPY under the hood), so a day is
  never held in memory. ADBC does *not* stream a query with bound parameters
  (it waits for all rows), so the cell query has no parameters: it contains
  only literals built from validated values — the day bounds from a
  ``datetime.date``, model names as hex of their UTF-8 bytes (only
  ``[0-9a-f]`` reaches SQL), and our own constants.
* **Vectorized.** Per-row work is done by PostgreSQL in the same query (ids
  and JSON as text, numbers from metadata, the content hash); Python
  assembles Arrow arrays. JSON arrays are not unnested in SQL (that was most
  of the query's cost): the query hands out ``metadata -> 'contexts'``,
  ``-> 'tags'`` and the consent key as JSON text. Arrow's JSON parser reads
  the contexts; :func:`consent.consent_from_record` decides consent once per
  distinct (column, tags, value) combination of a batch (few: tags repeat),
  so there is no second copy of the consent rules in SQL.
* **One turn per row.** A row is one prompt and its reply, so
  ``ReadOptions.convert_to_single_turn`` changes nothing here.
* **Messages.** ``[user(input), assistant(output)]``; when ``output`` is NULL
  the list is only the user message and ``response`` is null — the same
  conversation (and content hash) :func:`normalize.build_examples` produces
  for a record without output, so dedup agrees across sources. An empty
  output ``''`` is a (blank) assistant message.

``models_on`` uses psycopg with bound parameters (its result is small).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from .. import slugs
from ..consent import METADATA_KEY, consent_from_record
from ..normalize import (
    MESSAGES_DERIVED,
    messages_array,
    _FIELD_SEP,
    _MESSAGE_SEP,
    CONTENT_HASH_HEX_CHARS,
    ReadOptions,
    as_string_list,
    day_bounds,
    parse_timestamp,
)
from ..schema import MESSAGE_TYPE, NORMALIZED_SCHEMA
from .base import CellRead, SourceUnavailableError, TraceReader

SOURCE_KIND = "postgres"
DEFAULT_TABLE = "traces"
# Small batches keep memory flat (a cell is never held whole) and cost nothing measurable in speed.
DEFAULT_BATCH_SIZE_HINT_BYTES = 2 * 2**20
# Added to URLs that set none, so an unroutable host fails instead of hanging.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
# The URL query parameter that is ours, not libpq's.
TABLE_URL_PARAMETER = "table"

# Column → type, as in the design document.
TRACES_COLUMNS: dict[str, str] = {
    "id": "UUID PRIMARY KEY",
    "timestamp": "TIMESTAMP",
    "user_id": "TEXT",
    "session_id": "TEXT",
    "input": "TEXT",
    "output": "TEXT",
    "model": "TEXT",
    "latency_ms": "INT",
    "token_count": "INT",
    "metadata": "JSONB",
    "user_consent": "BOOLEAN",
}
_TIMESTAMP_TYPES = ("timestamp without time zone", "timestamp with time zone")
_METADATA_TYPE = "jsonb"

# An unquoted-style identifier; it is always double-quoted in SQL, so case is kept.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")



# ---------------------------------------------------------------- URL and table


@dataclass(frozen=True)
class PostgresLocation:
    """A parsed source URL: what libpq gets, which table, and a loggable name."""

    libpq_url: str = field(repr=False)  # may hold the password
    table: tuple[str, ...]  # (name,) or (schema, name), validated
    description: str
    secrets: tuple[str, ...] = field(repr=False)  # strings to scrub from error messages

    @property
    def table_sql(self) -> str:
        return ".".join(f'"{part}"' for part in self.table)


def parse_table_name(name: str) -> tuple[str, ...]:
    """``name`` or ``schema.name`` as validated parts; anything else is a ValueError."""
    parts = tuple(name.split(".")) if isinstance(name, str) else ()
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(
            f"invalid table name {name!r}: expected an identifier [A-Za-z_][A-Za-z0-9_$]* "
            "(at most 63 characters), optionally schema-qualified"
        )
    return parts


def parse_postgres_url(url: str, table: str = DEFAULT_TABLE) -> PostgresLocation:
    """Split ``postgresql://…[?table=name]`` into the libpq URL and the table.

    The URL's ``table`` parameter wins over ``table``. Other query parameters
    (sslmode, …) are passed to libpq untouched.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [value for key, value in query if key == TABLE_URL_PARAMETER]
    if len(tables) > 1:
        raise ValueError("the URL names more than one table")
    table_parts = parse_table_name(tables[0] if tables else table)
    libpq_query = [(key, value) for key, value in query if key != TABLE_URL_PARAMETER]
    if not any(key == "connect_timeout" for key, _ in libpq_query):
        libpq_query.append(("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT_SECONDS)))
    libpq_url = urlunsplit(parts._replace(query=urlencode(libpq_query)))

    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    params = dict(libpq_query)
    user = unquote(user) or params.get("user", "")
    host = hostinfo or params.get("host", "localhost")
    if "," not in host and not re.search(r":\d+$", host):
        host = f"{host}:{params.get('port', '5432')}"
    database = unquote(parts.path.lstrip("/")) or params.get("dbname", user)
    description = f"postgresql://{user + '@' if user else ''}{host}/{database} table={'.'.join(table_parts)}"
    secrets = tuple(s for s in (password, unquote(password), params.get("password", "")) if s)
    return PostgresLocation(libpq_url, table_parts, description, secrets)


def _scrubbed(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


# ---------------------------------------------------------------- SQL building


def _utf8_text_literal(value: str) -> str:
    """A SQL text expression for any string, built from hex only (no quoting to get wrong)."""
    return f"convert_from(decode('{value.encode('utf-8').hex()}', 'hex'), 'UTF8')"


def _json_float(value_sql: str) -> str:
    # Nested CASEs: PostgreSQL does not promise AND evaluates left to right,
    # and casting a non-number (or a number out of float8 range) raises.
    return (
        f"CASE WHEN jsonb_typeof({value_sql}) = 'number' THEN"
        f" CASE WHEN ({value_sql})::numeric = 0 OR abs(({value_sql})::numeric) BETWEEN 1e-307 AND 1e308"
        f" THEN ({value_sql})::numeric::float8 END END"
    )


def _json_int(value_sql: str) -> str:
    # Like normalize.as_int: numbers are truncated; absurd ones are null.
    return (
        f"CASE WHEN jsonb_typeof({value_sql}) = 'number' THEN"
        f" CASE WHEN abs(({value_sql})::numeric) <= {2**62} THEN trunc(({value_sql})::numeric)::bigint END END"
    )


def _content_hash_sql(input_sql: str, output_sql: str) -> str:
    """normalize.content_hash of [user(input), assistant(output) unless output is NULL]."""
    field_sep, message_sep = f"chr({ord(_FIELD_SEP)})", f"chr({ord(_MESSAGE_SEP)})"
    user = f"'user' || {field_sep} || coalesce({input_sql}, '') || {field_sep} || {message_sep}"
    assistant = (
        f"CASE WHEN {output_sql} IS NULL THEN ''"
        f" ELSE 'assistant' || {field_sep} || {output_sql} || {field_sep} || {message_sep} END"
    )
    canonical = f"{user} || {assistant}"
    return f"left(encode(sha256(convert_to({canonical}, 'UTF8')), 'hex'), {CONTENT_HASH_HEX_CHARS})"


def _day_window_sql(day: date, timestamp_type: str) -> str:
    with_zone = timestamp_type == "timestamp with time zone"
    cast, zone = ("timestamptz", "+00") if with_zone else ("timestamp", "")
    # Built from datetimes: only digits, '-', ':', ' ' and '+' reach SQL.
    start, end = (bound.replace(tzinfo=None).isoformat(sep=" ") + zone for bound in day_bounds(day))
    return f"t.\"timestamp\" >= '{start}'::{cast} AND t.\"timestamp\" < '{end}'::{cast}"


def _model_filter_sql(names: Sequence[str | None]) -> str:
    conditions = []
    if None in names:
        conditions.append("t.model IS NULL")
    literals = [_utf8_text_literal(name) for name in names if name is not None]
    if literals:
        conditions.append(f"t.model IN ({', '.join(literals)})")
    return "(" + " OR ".join(conditions) + ")"


def cell_query(table_sql: str, timestamp_type: str, day: date, model_names: Sequence[str | None]) -> str:
    """The streaming query of one cell: no parameters, only validated literals."""
    metadata = "t.metadata"
    input_tokens = _json_int(f"{metadata} -> 'input_tokens'")
    output_tokens = _json_int(f"{metadata} -> 'output_tokens'")
    return f"""
SELECT
    t.id::text AS trace_id,
    t."timestamp" AS "timestamp",
    t.model::text AS model,
    t.user_id::text AS user_id,
    t.session_id::text AS session_id,
    {metadata} ->> 'environment' AS environment,
    t.input::text AS prompt,
    t.output::text AS response,
    ({metadata} -> 'contexts')::text AS contexts_json,
    t.latency_ms::bigint AS latency_ms,
    {input_tokens} AS input_tokens,
    {output_tokens} AS output_tokens,
    coalesce(t.token_count::bigint, ({input_tokens}) + ({output_tokens})) AS total_tokens,
    {_json_float(f"{metadata} -> 'cost_usd'")} AS cost_usd,
    {metadata}::text AS metadata,
    t.user_consent AS user_consent,
    ({metadata} -> 'tags')::text AS tags_json,
    ({metadata} -> '{METADATA_KEY}')::text AS consent_value_json,
    {_content_hash_sql("t.input::text", "t.output::text")} AS content_hash,
    {_json_float(f"{metadata} -> 'feedback_score'")} AS feedback_score
FROM {table_sql} AS t
WHERE {_day_window_sql(day, timestamp_type)}
  AND t.id IS NOT NULL
  AND {_model_filter_sql(model_names)}
"""


# ---------------------------------------------------------------- Arrow assembly


def tags_from_json(text: str | None) -> list[str]:
    """The tags in the JSON text of ``metadata -> 'tags'``: its non-empty strings, in order.

    Anything but an array (a lone string, an object) holds no tags.
    """
    value = None if text is None else json.loads(text)
    if not isinstance(value, list):
        return []
    return [tag for tag in value if isinstance(tag, str) and tag]


def contexts_from_json(text: str | None) -> list[str]:
    """The contexts in the JSON text of ``metadata -> 'contexts'``: the items of
    an array as :func:`normalize.as_string_list` reads them (strings, or the text
    of a retrieved document), empty ones dropped. Anything but an array holds none."""
    value = None if text is None else json.loads(text)
    return as_string_list(value) if isinstance(value, list) else []


_STRING_LISTS_JSON_SCHEMA = pa.schema([("items", pa.list_(pa.string()))])


def contexts_array(contexts_json: pa.Array) -> pa.Array:
    """``contexts`` of a batch: list<string> per row, never null.

    Arrow's JSON parser reads the common case, arrays of strings, in C++ (the
    database unnesting them with jsonb_array_elements was a third of its cost
    for the whole query); a batch with anything else (documents as objects,
    numbers, a bare string) is read row by row with :func:`contexts_from_json`.
    """
    lines = pc.binary_join_element_wise('{"items":', pc.fill_null(contexts_json.cast(pa.string()), "null"), "}\n", "")
    text = lines.buffers()[2]
    end = int(np.frombuffer(lines.buffers()[1], dtype=np.int32)[len(lines)])
    try:
        parsed = pajson.read_json(
            pa.BufferReader(text.slice(0, end) if text is not None else b""),
            read_options=pajson.ReadOptions(use_threads=False, block_size=max(end, 1)),
            parse_options=pajson.ParseOptions(explicit_schema=_STRING_LISTS_JSON_SCHEMA),
        ).column("items")
    except pa.ArrowInvalid:
        parsed = None
    if parsed is None or len(parsed) != len(contexts_json):
        return pa.array([contexts_from_json(text) for text in contexts_json.to_pylist()], pa.list_(pa.string()))
    lists = parsed.combine_chunks()
    items = pc.list_flatten(lists)
    keep = pc.fill_null(pc.greater(pc.utf8_length(items), 0), False)  # JSON null and "" items go
    parents = pc.list_parent_indices(lists).to_numpy()
    per_row = np.bincount(parents[keep.to_numpy(zero_copy_only=False)], minlength=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(per_row, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), items.filter(keep), type=pa.list_(pa.string()))


def _distinct_codes(array: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Per row, an index into the distinct non-null values (returned); null rows get ``len(values)``."""
    encoded = array.dictionary_encode()
    values = encoded.dictionary.to_pylist()
    codes = encoded.indices.fill_null(len(values)).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, values


def consent_and_tags(
    explicit: pa.Array, tags_json: pa.Array, consent_value_json: pa.Array
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``consent``, ``consent_source`` and ``tags`` of a batch, by :func:`consent.consent_from_record`.

    The rules run in Python, once per distinct (column, tags, metadata value)
    combination of the batch: there are few (tags repeat across a day), and
    the same function every other reader uses decides, so the sources cannot
    disagree. The database only hands out the two small JSON fragments;
    unnesting them in SQL cost it more than the rest of the query.
    """
    tag_codes, tag_texts = _distinct_codes(tags_json)
    value_codes, value_texts = _distinct_codes(consent_value_json)
    tag_lists = [tags_from_json(text) for text in tag_texts] + [[]]  # the last: no tags key
    explicit_codes = np.asarray(
        pc.fill_null(pc.cast(explicit, pa.int8()), 2).to_numpy(zero_copy_only=False), dtype=np.int64
    )  # 0 False, 1 True, 2 null
    tags_size, values_size = len(tag_lists), len(value_texts) + 1
    combined = (explicit_codes * tags_size + tag_codes) * values_size + value_codes
    combinations, row_combination = np.unique(combined, return_inverse=True)
    consents, sources = [], []
    for combination in combinations.tolist():
        explicit_code, rest = divmod(combination, tags_size * values_size)
        tag_code, value_code = divmod(rest, values_size)
        metadata = {} if value_code == len(value_texts) else {METADATA_KEY: json.loads(value_texts[value_code])}
        consent, source = consent_from_record((False, True, None)[explicit_code], tag_lists[tag_code], metadata)
        consents.append(consent)
        sources.append(source)
    return (
        pa.array(consents, pa.bool_()).take(row_combination),
        pa.array(sources, pa.string()).take(row_combination),
        pa.array(tag_lists, pa.list_(pa.string())).take(tag_codes),
    )


def _as_field_type(array: pa.Array, field: pa.Field) -> pa.Array:
    # ADBC annotates fields with PostgreSQL type metadata; strict equality sees it.
    if array.type.equals(field.type, check_metadata=True):
        return array
    return array.cast(field.type)


def normalized_batch(
    sql_batch: pa.RecordBatch, *, day: date, slug: str, extracted_at: datetime, model_is_blank: bool
) -> pa.RecordBatch:
    """A batch of NORMALIZED_SCHEMA from one batch of :func:`cell_query`."""
    rows = sql_batch.num_rows
    sql_columns = dict(zip(sql_batch.schema.names, sql_batch.columns))
    prompt, response = sql_columns["prompt"], sql_columns["response"]
    constants = {
        "observation_id": pa.nulls(rows, pa.string()),
        "date": pa.repeat(pa.scalar(day.isoformat(), pa.string()), rows),
        "model_slug": pa.repeat(pa.scalar(slug, pa.string()), rows),
        "source": pa.repeat(pa.scalar(SOURCE_KIND, pa.string()), rows),
        "extracted_at": pa.repeat(pa.scalar(extracted_at, pa.timestamp("us", tz="UTC")), rows),
        "tools": pa.nulls(rows, pa.string()),
    }
    consent, consent_source, tags = consent_and_tags(
        sql_columns["user_consent"], sql_columns["tags_json"], sql_columns["consent_value_json"]
    )
    derived = {
        "messages": messages_array(prompt, response),
        "consent": consent,
        "consent_source": consent_source,
        "tags": tags,
        "contexts": contexts_array(sql_columns["contexts_json"]),
    }
    if model_is_blank:
        # The unknown cell: NULL or blank names, which the normalized model column stores as null.
        derived["model"] = pa.nulls(rows, pa.string())
    columns = []
    for field in NORMALIZED_SCHEMA:
        if field.name in derived:
            array = derived[field.name]
        elif field.name in constants:
            array = constants[field.name]
        else:
            array = sql_columns[field.name]
        columns.append(_as_field_type(array, field))
    # Every messages value here is messages_array(prompt, response): compact_messages need not compare.
    return pa.RecordBatch.from_arrays(columns, schema=NORMALIZED_SCHEMA.with_metadata(MESSAGES_DERIVED))


# ---------------------------------------------------------------- the reader


class PostgresTraceReader(TraceReader):
    """Traces of one PostgreSQL table, streamed per (day, model slug) cell."""

    kind = SOURCE_KIND

    def __init__(
        self,
        url: str,
        table: str = DEFAULT_TABLE,
        options: ReadOptions | None = None,
        batch_size_hint_bytes: int = DEFAULT_BATCH_SIZE_HINT_BYTES,
    ) -> None:
        super().__init__(options)
        if not isinstance(batch_size_hint_bytes, int) or batch_size_hint_bytes <= 0:
            raise ValueError(f"batch_size_hint_bytes must be a positive int, not {batch_size_hint_bytes!r}")
        self._location = parse_postgres_url(url, table)
        self._batch_size_hint_bytes = batch_size_hint_bytes
        self._catalog_connection: Any = None  # psycopg, opened on first use
        self._streams: set[Any] = set()  # ADBC connections of cells being read
        self._timestamp_type: str | None = None
        self._closed = False

    @property
    def description(self) -> str:
        return self._location.description

    @property
    def table(self) -> str:
        return ".".join(self._location.table)

    # -- lifecycle

    def close(self) -> None:
        self._closed = True
        for connection in list(self._streams):
            _close_quietly(connection)
        self._streams.clear()
        if self._catalog_connection is not None:
            _close_quietly(self._catalog_connection)
            self._catalog_connection = None

    def __enter__(self) -> "PostgresTraceReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- TraceReader

    def models_on(self, day: date) -> list[str | None]:
        from psycopg import sql

        day = _as_day(day)
        timestamp_type = self._checked_timestamp_type()
        start, end = day_bounds(day)
        if timestamp_type != "timestamp with time zone":
            start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        query = sql.SQL(
            'SELECT DISTINCT model::text FROM {} WHERE "timestamp" >= %s AND "timestamp" < %s AND id IS NOT NULL'
        ).format(sql.Identifier(*self._location.table))
        rows = self._catalog_query(query, (start, end))
        return sorted((row[0] for row in rows), key=lambda name: (name is None, name or ""))

    def read_cell(self, day: date, model_slug: str) -> CellRead:
        day = _as_day(day)
        names = [name for name in self.models_on(day) if slugs.model_slug(name) == model_slug]
        if not names:
            return CellRead(batches=iter(()))  # an empty cell is not an error
        query = cell_query(self._location.table_sql, self._checked_timestamp_type(), day, names)
        return CellRead(batches=self._stream(query, day, model_slug, extracted_at=datetime.now(timezone.utc)))

    # -- internals

    def _stream(self, query: str, day: date, slug: str, extracted_at: datetime) -> Iterator[pa.RecordBatch]:
        import adbc_driver_manager
        from adbc_driver_postgresql import StatementOptions, dbapi

        # A server that refuses or goes away mid-stream raises ADBC errors or
        # OSError (Arrow's IOError); errors of our own code are not masked.
        source_errors = (adbc_driver_manager.Error, OSError)
        self._ensure_open()
        connection = cursor = reader = None
        try:
            try:
                connection = dbapi.connect(self._location.libpq_url, autocommit=True)
                self._streams.add(connection)
                cursor = connection.cursor()
                # JIT compiling this wide expression list costs ~0.7 s per query, far more than it saves.
                cursor.execute("SET jit = off")
                cursor.adbc_statement.set_options(
                    **{StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(self._batch_size_hint_bytes)}
                )
                cursor.execute(query)
                reader = cursor.fetch_record_batch()
            except source_errors as exc:
                raise self._unavailable(exc) from None
            while True:
                try:
                    sql_batch = reader.read_next_batch()
                except StopIteration:
                    return
                except source_errors as exc:
                    raise self._unavailable(exc) from None
                if sql_batch.num_rows:
                    yield normalized_batch(
                        sql_batch,
                        day=day,
                        slug=slug,
                        extracted_at=extracted_at,
                        model_is_blank=slug == slugs.UNKNOWN_MODEL_SLUG,
                    )
        finally:
            for resource in (reader, cursor, connection):
                if resource is not None:
                    _close_quietly(resource)
            self._streams.discard(connection)

    def _checked_timestamp_type(self) -> str:
        """Check the table once: it exists, has our columns, and a usable timestamp type."""
        if self._timestamp_type is not None:
            return self._timestamp_type
        columns = dict(
            self._catalog_query(
                "SELECT attname, atttypid::regtype::text FROM pg_attribute"
                " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (self._location.table_sql,),
            )
        )
        if not columns:
            raise SourceUnavailableError(f"{self.description}: table does not exist")
        missing = [name for name in TRACES_COLUMNS if name not in columns]
        if missing:
            raise SourceUnavailableError(f"{self.description}: table lacks columns {missing}")
        if columns["timestamp"] not in _TIMESTAMP_TYPES:
            raise SourceUnavailableError(
                f"{self.description}: column timestamp is {columns['timestamp']}, expected timestamp or timestamptz"
            )
        if columns["metadata"] != _METADATA_TYPE:
            raise SourceUnavailableError(
                f"{self.description}: column metadata is {columns['metadata']}, expected jsonb"
            )
        self._timestamp_type = columns["timestamp"]
        return self._timestamp_type

    def _catalog_query(self, query: Any, params: Sequence[Any]) -> list[tuple]:
        import psycopg

        self._ensure_open()
        try:
            if self._catalog_connection is None or self._catalog_connection.closed:
                self._catalog_connection = psycopg.connect(self._location.libpq_url, autocommit=True)
            return self._catalog_connection.execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> SourceUnavailableError:
        detail = _scrubbed(str(exc).strip(), self._location.secrets)
        return SourceUnavailableError(f"{self.description}: {detail}")

    def _ensure_open(self) -> None:
        if self._closed:
            raise ValueError(f"reader of {self.description} is closed")


def _as_day(day: date) -> date:
    if not isinstance(day, date):
        raise TypeError(f"day must be a datetime.date, not {type(day).__name__}")
    return date(day.year, day.month, day.day)  # a datetime is a date too: drop its time


def _close_quietly(resource: Any) -> None:
    try:
        resource.close()
    except Exception:  # closing is best effort; the error that matters was raised already
        pass


# ---------------------------------------------------------------- table helpers


def create_traces_table(conn_url: str, table: str = DEFAULT_TABLE) -> None:
    """Create the design-document table (if absent) with an index on timestamp."""
    import psycopg
    from psycopg import sql

    location = parse_postgres_url(conn_url, table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(column_type))
        for name, column_type in TRACES_COLUMNS.items()
    )
    index_name = f"{location.table[-1][:50]}_timestamp_idx"
    with psycopg.connect(location.libpq_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(sql.Identifier(*location.table), columns)
        )
        connection.execute(
            sql.SQL('CREATE INDEX IF NOT EXISTS {} ON {} ("timestamp")').format(
                sql.Identifier(index_name), sql.Identifier(*location.table)
            )
        )


def insert_traces(conn_url: str, rows: Sequence[Mapping[str, Any]], table: str = DEFAULT_TABLE) -> int:
    """COPY rows (dicts with the design-document column names) into the table.

    Missing columns are NULL, except ``id`` which defaults to a new UUID.
    ``metadata`` may be a dict/list (stored as JSON) or JSON text.
    ``timestamp`` may be a datetime or ISO text; one with an offset is
    stored as its UTC time. Returns the number of rows.
    """
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    location = parse_postgres_url(conn_url, table)
    names = list(TRACES_COLUMNS)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*location.table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with psycopg.connect(location.libpq_url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")  # naive datetimes into timestamptz mean UTC
        with connection.cursor() as cursor, cursor.copy(copy) as writer:
            for row in rows:
                unknown = set(row) - set(names)
                if unknown:
                    raise ValueError(f"unknown trace columns {sorted(unknown)}")
                values = dict(row)
                values.setdefault("id", uuid.uuid4())
                if isinstance(values.get("metadata"), (dict, list)):
                    values["metadata"] = Jsonb(values["metadata"])
                stamp = values.get("timestamp")
                if isinstance(stamp, str):
                    stamp = parse_timestamp(stamp)  # PostgreSQL would drop an offset for a timestamp column
                if isinstance(stamp, datetime) and stamp.tzinfo is not None:
                    values["timestamp"] = stamp.astimezone(timezone.utc).replace(tzinfo=None)
                writer.write_row([values.get(name) for name in names])
    return len(rows)
