"""Loading the consent registry from where ``MATERIALIZER_CONSENT_REGISTRY`` points.

A CSV or Parquet file (local or ``s3://``) or a Postgres table
(``postgresql://…/db?table=consent_registry``) with columns user_id, granted,
updated_at. A registry that is configured but cannot be read is an error:
consent is never decided without it (fail closed).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pyarrow.parquet as pq

from .consent import ConsentRegistry
from .storage import S3Options, resolve

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
DEFAULT_REGISTRY_TABLE = "consent_registry"


class RegistryUnavailableError(RuntimeError):
    """The configured consent registry cannot be read; nothing is published."""


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", "@")
    return urlunparse(parsed._replace(netloc=netloc))


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid table name: {name!r}")
    return ".".join(f'"{part}"' for part in name.split("."))


def split_table_param(url: str, default_table: str) -> tuple[str, str]:
    """(libpq URL without our ``table`` parameter, table name)."""
    parsed = urlparse(url)
    params = parse_qs(parsed.query, keep_blank_values=True)
    table = (params.pop("table", [default_table]) or [default_table])[0]
    query = urlencode({key: values[-1] for key, values in params.items()})
    return urlunparse(parsed._replace(query=query)), table


def load_registry(location: str, s3_options: S3Options | None = None) -> ConsentRegistry:
    location = location.strip()
    try:
        if location.startswith(("postgresql://", "postgres://")):
            return _load_postgres(location)
        target = resolve(location, s3_options)
        if location.lower().endswith(".parquet"):
            table = pq.read_table(target.path, filesystem=target.filesystem)
            return ConsentRegistry.from_table(table, location)
        with target.filesystem.open_input_stream(target.path) as stream:
            text = stream.read().decode("utf-8-sig")
        return ConsentRegistry.from_csv_text(text, location)
    except (OSError, ValueError) as exc:
        shown = redact_url(location)
        raise RegistryUnavailableError(f"cannot read the consent registry {shown}: {exc}") from exc


def _load_postgres(url: str) -> ConsentRegistry:
    import psycopg

    conninfo, table = split_table_param(url, DEFAULT_REGISTRY_TABLE)
    query = f"SELECT user_id::text, granted::text, updated_at FROM {quote_identifier(table)}"
    try:
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            rows = conn.execute(query).fetchall()
    except psycopg.Error as exc:
        raise OSError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    return ConsentRegistry.from_rows(
        ({"user_id": u, "granted": g, "updated_at": t} for u, g, t in rows), redact_url(url)
    )
