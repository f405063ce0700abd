"""A Langfuse API server for contract tests (real HTTP on 127.0.0.1, validated against the spec)."""

from .data import FixtureData, build_default_fixture, expected_cells, expected_rows
from .server import PUBLIC_KEY, SECRET_KEY, LangfuseContractServer

__all__ = [
    "FixtureData",
    "LangfuseContractServer",
    "PUBLIC_KEY",
    "SECRET_KEY",
    "build_default_fixture",
    "expected_cells",
    "expected_rows",
]
