"""Settings of the Langfuse API client, read the Langfuse way (DESIGN §4).

The server and keys come from Langfuse's own variables: ``LANGFUSE_BASE_URL``
(or ``LANGFUSE_HOST``), ``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY``
(HTTP Basic: public key as user, secret key as password). A source URL such
as ``https://langfuse.example.com`` names the server directly; it may carry
the keys as ``https://pk-lf-…:sk-lf-…@host`` (the URL is then a secret, as
every source URL is). Our own knobs are ``MATERIALIZER_LANGFUSE_*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from ..sources.base import SourceUnavailableError

DEFAULT_HOST = "https://cloud.langfuse.com"  # the SDKs' default
API_VERSIONS = ("auto", "v3", "v4")

ENV_BASE_URL = "LANGFUSE_BASE_URL"
ENV_HOST = "LANGFUSE_HOST"
ENV_PUBLIC_KEY = "LANGFUSE_PUBLIC_KEY"
ENV_SECRET_KEY = "LANGFUSE_SECRET_KEY"
ENV_REQUESTS_PER_SECOND = "MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND"
ENV_API_VERSION = "MATERIALIZER_LANGFUSE_API"
ENV_TIMEOUT = "MATERIALIZER_LANGFUSE_TIMEOUT_SECONDS"
ENV_MAX_ATTEMPTS = "MATERIALIZER_LANGFUSE_MAX_ATTEMPTS"
ENV_WRITE_SCORES = "MATERIALIZER_LANGFUSE_WRITE_SCORES"


def is_langfuse_source(uri: str | None) -> bool:
    """True for the sources the Langfuse reader serves: ``langfuse`` or an http(s) URL."""
    text = (uri or "").strip()
    return text.lower() == "langfuse" or text.lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class LangfuseConfig:
    """Where the Langfuse server is, how to authenticate, and how hard to push it."""

    host: str = DEFAULT_HOST
    public_key: str | None = None
    secret_key: str | None = None
    # Langfuse Cloud allows 30-1,000 requests per minute depending on the plan;
    # 429 + Retry-After is honoured on top of this cap. <= 0: no cap.
    requests_per_second: float = 5.0
    timeout_seconds: float = 30.0
    max_attempts: int = 6
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    api_version: str = "auto"
    # Page sizes: the spec's maxima (v2 observations 1000; v3 lists and scores 100).
    page_limit_v4: int = 1000
    page_limit_v3: int = 100
    # A day is read in windows of this many minutes (v3: deep pages are expensive;
    # both: bounds the memory of one window's generations).
    window_minutes: int = 60
    # Retrievers that started this long before a window still feed its generations.
    retriever_lead_minutes: int = 10
    # Trace ids per score request (they travel in the query string).
    score_ids_per_request: int = 50

    def __post_init__(self) -> None:
        if self.api_version not in API_VERSIONS:
            raise ValueError(f"Langfuse API version must be one of {API_VERSIONS}, got {self.api_version!r}")
        if self.window_minutes <= 0 or (24 * 60) % self.window_minutes:
            raise ValueError("window_minutes must divide a day (e.g. 15, 60, 240, 1440)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @property
    def has_credentials(self) -> bool:
        return bool(self.public_key) and bool(self.secret_key)

    def __repr__(self) -> str:  # never show the secret key
        return (
            f"LangfuseConfig(host={self.host!r}, public_key={self.public_key!r}, secret_key="
            f"{'***' if self.secret_key else None}, api_version={self.api_version!r}, "
            f"requests_per_second={self.requests_per_second})"
        )

    def with_overrides(self, **changes) -> "LangfuseConfig":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, source: str | None = None, env: Mapping[str, str] | None = None, **overrides) -> "LangfuseConfig":
        """Settings for ``source`` (``langfuse`` or ``http(s)://host``) from the environment.

        Raises :class:`SourceUnavailableError` when keys are missing, naming
        the variables (never their values).
        """
        env = os.environ if env is None else env
        source = (source or "langfuse").strip()
        public_key = _env(env, ENV_PUBLIC_KEY)
        secret_key = _env(env, ENV_SECRET_KEY)
        if source.lower() == "langfuse":
            host = _env(env, ENV_BASE_URL) or _env(env, ENV_HOST) or DEFAULT_HOST
        elif is_langfuse_source(source):
            host = source
        else:
            raise ValueError(f"not a Langfuse source: {redact_url(source)!r}")
        host, url_user, url_password = _split_credentials(host)
        if url_user and url_password:
            public_key, secret_key = url_user, url_password
        values = {
            "host": host,
            "public_key": public_key,
            "secret_key": secret_key,
            "requests_per_second": _env_float(env, ENV_REQUESTS_PER_SECOND, cls.requests_per_second),
            "timeout_seconds": _env_float(env, ENV_TIMEOUT, cls.timeout_seconds),
            "max_attempts": int(_env_float(env, ENV_MAX_ATTEMPTS, cls.max_attempts)),
            "api_version": (_env(env, ENV_API_VERSION) or "auto").lower(),
        }
        values.update(overrides)
        config = cls(**values)
        if not config.has_credentials:
            raise SourceUnavailableError(
                f"Langfuse at {config.host}: set {ENV_PUBLIC_KEY} and {ENV_SECRET_KEY} "
                "(or put the keys in the source URL as https://public:secret@host)"
            )
        return config


def redact_url(url: str) -> str:
    """``url`` without user info (keys, passwords), safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Langfuse host must be an http(s) URL, got {redact_url(url)!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    clean = redact_url(url).rstrip("/")
    # Only the server's root (and a path prefix behind a proxy) is kept; no query.
    clean_parts = urlsplit(clean)
    return urlunsplit((clean_parts.scheme, clean_parts.netloc, clean_parts.path.rstrip("/"), "", "")), user, password


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
