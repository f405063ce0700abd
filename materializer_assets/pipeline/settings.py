"""Reading settings from the environment, the same way for every stage."""

from __future__ import annotations

import os

import dagster as dg

from ..lib.consent import parse_consent


def secret_setting(name: str, default: str = "") -> str | dg.EnvVar:
    """An ``EnvVar`` when set, so Dagster resolves it at run time and never displays it."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip()
    value = parse_consent(raw) if raw else None  # same true/false words as consent
    return default if value is None else value


def env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name, "").strip()
    return [item.strip() for item in raw.split(",") if item.strip()] if raw else None
