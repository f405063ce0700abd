"""pytest fixtures for the contract server; conftest files import them with ``from … import *``.

The spec is read from ``../shared/contracts/langfuse/openapi.yml`` at test
time (never copied into the project); without it the tests skip, naming it.
Each server checks at teardown that every request it received and every
response it served matched the spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from .data import FixtureData, build_default_fixture
from .server import PUBLIC_KEY, SECRET_KEY, LangfuseContractServer

SPEC_RELATIVE = Path("contracts/langfuse/openapi.yml")
LANGFUSE_ENV = ("LANGFUSE_HOST", "LANGFUSE_BASE_URL", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY")


@pytest.fixture
def langfuse_spec_path(shared_dir: Path) -> Path:
    path = shared_dir / SPEC_RELATIVE
    if not path.is_file():
        pytest.skip(f"{path} is absent: the Langfuse contract tests need ../shared/{SPEC_RELATIVE}")
    pytest.importorskip("openapi_core", reason="openapi-core validates the contract server's responses")
    return path


@pytest.fixture
def make_langfuse_server(langfuse_spec_path: Path) -> Iterator[Callable[..., LangfuseContractServer]]:
    """Factory: ``make_langfuse_server(version="4.2.0", data=None, cursor_mode="normal")``, started."""
    servers: list[LangfuseContractServer] = []

    def make(
        version: str = "4.2.0", data: FixtureData | None = None, cursor_mode: str = "normal"
    ) -> LangfuseContractServer:
        server = LangfuseContractServer(
            data if data is not None else build_default_fixture(),
            version=version,
            spec_path=langfuse_spec_path,
            cursor_mode=cursor_mode,
        ).start()
        servers.append(server)
        return server

    yield make
    violations = []
    for server in servers:
        server.stop()
        violations += server.violations
    assert not violations, "the contract server saw traffic outside the spec:\n" + "\n".join(violations[:20])


@pytest.fixture
def langfuse_env(monkeypatch) -> Callable[[LangfuseContractServer], None]:
    """Points Langfuse's own variables at a contract server (and clears any real ones)."""
    for name in LANGFUSE_ENV:
        monkeypatch.delenv(name, raising=False)

    def point_at(server: LangfuseContractServer) -> None:
        monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY)
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET_KEY)
        monkeypatch.setenv("MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND", "0")  # tests need no politeness

    return point_at
