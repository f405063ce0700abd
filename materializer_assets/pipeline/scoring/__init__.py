"""Stage 3: consented traces → judge_scores, ragas_scores (LLM judge fleet and Ragas metrics)."""

from __future__ import annotations

import os

from ...resources.scoring import JudgeMemberConfig, JudgeResource, RagasResource
from ..settings import secret_setting
from .assets import POOL, SCORED_UPSTREAM, judge_scores, ragas_scores
from .erasure import register as _register_erasure

# The score cache quotes users' answers: the gdpr_erasure job erases it too (it is no asset, so it is registered).
_register_erasure()

ASSETS = [judge_scores, ragas_scores]
SENSORS: list = []
SCHEDULES: list = []


def _first_env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def _first_secret(*names: str):
    """The first of ``names`` that is set, as an EnvVar (resolved at run time, never displayed)."""
    for name in names:
        setting = secret_setting(name)
        if setting:
            return setting
    return ""


def _number(name: str, default, kind=float):
    raw = os.environ.get(name, "").strip()
    return kind(raw) if raw else default


def parse_committee(raw: str) -> list[JudgeMemberConfig]:
    """``model-a, model-b@http://host:8001/v1`` → one member per comma-separated entry."""
    members = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        model, _, base_url = entry.partition("@")
        members.append(JudgeMemberConfig(model=model.strip(), base_url=base_url.strip()))
    return members


def _shared() -> dict:
    settings = {
        "max_non_ok_share": _number("MATERIALIZER_SCORING_MAX_NON_OK_SHARE", 0.05),
        "cache_location": os.environ.get("MATERIALIZER_SCORE_CACHE", ""),
        "non_ok_max_tries": _number("MATERIALIZER_SCORING_NON_OK_MAX_TRIES", 3, int),
    }
    return settings


def build_resources() -> dict:
    judge_base_url = _first_env("MATERIALIZER_JUDGE_BASE_URL", "OPENAI_BASE_URL")
    judge_model = _first_env("MATERIALIZER_JUDGE_MODEL")
    judge_key_names = ("MATERIALIZER_JUDGE_API_KEY", "OPENAI_API_KEY")
    ragas_key_names = ("MATERIALIZER_RAGAS_API_KEY",) + judge_key_names
    return {
        "judge": JudgeResource(
            base_url=judge_base_url,
            model=judge_model,
            api_key=_first_secret(*judge_key_names),
            committee=parse_committee(os.environ.get("MATERIALIZER_JUDGE_COMMITTEE", "")),
            aggregate=os.environ.get("MATERIALIZER_JUDGE_AGGREGATE", "median").strip() or "median",
            quorum=_number("MATERIALIZER_JUDGE_QUORUM", 0, int),
            structured_output=os.environ.get("MATERIALIZER_JUDGE_STRUCTURED_OUTPUT", "auto").strip() or "auto",
            concurrency=_number("MATERIALIZER_JUDGE_CONCURRENCY", 32, int),
            timeout_s=_number("MATERIALIZER_JUDGE_TIMEOUT", 60.0),
            max_attempts=_number("MATERIALIZER_JUDGE_MAX_ATTEMPTS", 4, int),
            **_shared(),
        ),
        "ragas": RagasResource(
            base_url=_first_env("MATERIALIZER_RAGAS_BASE_URL") or judge_base_url,
            model=_first_env("MATERIALIZER_RAGAS_MODEL") or judge_model,
            api_key=_first_secret(*ragas_key_names),
            embeddings_base_url=_first_env("MATERIALIZER_RAGAS_EMBEDDINGS_BASE_URL"),
            embeddings_model=_first_env("MATERIALIZER_RAGAS_EMBEDDINGS_MODEL"),
            embeddings_api_key=_first_secret("MATERIALIZER_RAGAS_EMBEDDINGS_API_KEY", *ragas_key_names),
            concurrency=_number("MATERIALIZER_RAGAS_CONCURRENCY", 16, int),
            timeout_s=_number("MATERIALIZER_RAGAS_TIMEOUT", 120.0),
            max_attempts=_number("MATERIALIZER_RAGAS_MAX_ATTEMPTS", 4, int),
            structured_output=os.environ.get("MATERIALIZER_RAGAS_STRUCTURED_OUTPUT", "json_object").strip()
            or "json_object",
            **_shared(),
        ),
    }


__all__ = ["ASSETS", "POOL", "SCHEDULES", "SCORED_UPSTREAM", "SENSORS", "build_resources", "parse_committee"]
