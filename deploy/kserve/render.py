#!/usr/bin/env python3
"""Render the judge fleet manifests: fill every ``${VAR}`` of a template, refuse to guess.

    python deploy/kserve/render.py > judge-fleet.rendered.yaml
    JUDGE_MAX_REPLICAS=20 python deploy/kserve/render.py --env-file prod.env | kubectl apply -f -

Values come from ``defaults.env`` (next to this file), then each ``--env-file`` in order, then
the process environment (the last one wins). Unlike ``envsubst``, a variable that is set
nowhere is an error, not an empty string, and the result must parse as YAML with replica counts
that make sense. Standard library plus PyYAML (a Dagster dependency) only.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_TEMPLATE = HERE / "judge-fleet.yaml"
DEFAULT_ENV_FILE = HERE / "defaults.env"
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
# Characters that would change the YAML structure if substituted into a plain scalar.
UNSAFE_VALUE = re.compile(r"[\n\r\t\"'{}\[\]]|: |\s#|^[\s&*!|>%@`,-]")
INTEGER_VARIABLES = ("JUDGE_MIN_REPLICAS", "JUDGE_MAX_REPLICAS", "JUDGE_MAX_MODEL_LEN", "JUDGE_SCALE_THRESHOLD")


class RenderError(ValueError):
    """The template cannot be rendered as asked (missing or unusable values)."""


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped, quotes are not special."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise RenderError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key] = value.strip()
    return values


def placeholders(template: str) -> list[str]:
    return sorted(set(PLACEHOLDER.findall(template)))


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with every ``${VAR}`` replaced; raises RenderError naming what is wrong."""
    names = placeholders(template)
    missing = [name for name in names if name not in values or values[name] == ""]
    if missing:
        raise RenderError("not set: " + ", ".join(missing))
    unsafe = [name for name in names if UNSAFE_VALUE.search(values[name])]
    if unsafe:
        raise RenderError("values that would break the YAML: " + ", ".join(unsafe))
    for name in INTEGER_VARIABLES:
        if name in names and not re.fullmatch(r"[0-9]+", values[name]):
            raise RenderError(f"{name} must be a whole number, got {values[name]!r}")
    if "JUDGE_MIN_REPLICAS" in names and "JUDGE_MAX_REPLICAS" in names:
        low, high = int(values["JUDGE_MIN_REPLICAS"]), int(values["JUDGE_MAX_REPLICAS"])
        if not 1 <= low <= high:
            raise RenderError(f"need 1 <= JUDGE_MIN_REPLICAS <= JUDGE_MAX_REPLICAS, got {low} and {high}")
    rendered = PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise RenderError("a rendered document has no apiVersion/kind")
    return rendered


def collect_values(env_files: Iterable[Path], environ: Mapping[str, str], use_defaults: bool = True) -> dict[str, str]:
    values: dict[str, str] = {}
    if use_defaults:
        values.update(read_env_file(DEFAULT_ENV_FILE))
    for path in env_files:
        values.update(read_env_file(path))
    values.update(environ)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--env-file", type=Path, action="append", default=[], help="KEY=VALUE file (repeatable)")
    parser.add_argument("--no-defaults", action="store_true", help=f"do not read {DEFAULT_ENV_FILE.name}")
    args = parser.parse_args(argv)
    try:
        values = collect_values(args.env_file, os.environ, use_defaults=not args.no_defaults)
        sys.stdout.write(render(args.template.read_text(), values))
    except (RenderError, OSError, yaml.YAMLError) as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
