"""The judge fleet and the Ragas endpoints (DESIGN §6), as Dagster resources.

Both talk to any OpenAI-compatible endpoint (vLLM, KServe, a llama.cpp
server, OpenAI). Nothing configured is a valid state: the assets still
materialize, every row ``not_configured``, and a WARN check says so.
``pipeline/scoring/build_resources()`` fills them from the environment.
"""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from pydantic import Field

from ..lib.scoring.cache import ScoreCache
from ..lib.scoring.http import RetryPolicy
from ..lib.scoring.judge import AUTO, Endpoint, JudgeClient
from ..lib.scoring.prompt import JudgePrompt
from ..lib.scoring.ragas_metrics import RagasScorer
from ..lib.scoring.runner import DEFAULT_MAX_TRIES, JudgeCellScorer, RagasCellScorer
from ..lib.storage import Location, S3Options, resolve

CACHE_OFF = "off"


class JudgeMemberConfig(dg.Config):
    """One judge of a committee."""

    model: str = Field(description="Model name the endpoint serves.")
    base_url: str = Field(default="", description="OpenAI-compatible base URL; default the resource's base_url.")
    api_key_env: str = Field(
        default="", description="Name of the environment variable holding this judge's API key; default the resource's key."
    )
    name: str = Field(default="", description="Label in the judges column; default the model name.")


def _cache(cache_location: str, warehouse: Location | None) -> ScoreCache | None:
    location = cache_location.strip()
    if location.lower() == CACHE_OFF:
        return None
    if location:
        return ScoreCache(resolve(location, S3Options()))
    if warehouse is None:
        return None
    return ScoreCache.in_warehouse(warehouse)


class _ScoringSettings(dg.ConfigurableResource):
    concurrency: int = Field(default=32, description="Requests in flight per endpoint.")
    timeout_s: float = Field(default=60.0, description="Timeout of one HTTP request, body included.")
    max_attempts: int = Field(default=4, description="Attempts per request (429, 5xx, timeouts are retried).")
    initial_backoff_s: float = Field(default=0.5, description="First retry waits about this long, then doubling.")
    max_non_ok_share: float = Field(
        default=0.05, description="WARN when a larger share of the scored rows is not ok."
    )
    cache_location: str = Field(
        default="",
        description="Score cache: empty = <warehouse>/score-cache, 'off', or a folder / s3://bucket/prefix.",
    )
    chunk_rows: int = Field(default=0, description="Traces per scoring chunk; 0 = 4 × concurrency.")
    non_ok_max_tries: int = Field(
        default=DEFAULT_MAX_TRIES,
        ge=1,
        description="Runs that may ask for a trace whose cached answer is not ok (unparseable, out_of_range, "
        "error, …), in total; after that its last status is served from the cache. 1 = never ask again.",
    )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts, timeout_s=self.timeout_s, initial_backoff_s=self.initial_backoff_s
        )

    def score_cache(self, warehouse: Location | None) -> ScoreCache | None:
        return _cache(self.cache_location, warehouse)

    def chunk_size(self) -> int:
        return self.chunk_rows if self.chunk_rows > 0 else max(32, 4 * self.concurrency)


class JudgeResource(_ScoringSettings):
    """The LLM judge, or a committee of judges (MATERIALIZER_JUDGE_*)."""

    base_url: str = Field(default="", description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1.")
    model: str = Field(default="", description="Judge model name; empty = no judge configured.")
    api_key: Optional[str] = Field(default="", description="API key (never logged).")
    committee: list[JudgeMemberConfig] = Field(
        default_factory=list, description="Several judges; when set, replaces base_url/model."
    )
    aggregate: str = Field(default="median", description="Committee aggregate: 'mean' or 'median'.")
    quorum: int = Field(default=0, description="Judges that must answer for a committee score; 0 = a majority.")
    structured_output: str = Field(
        default=AUTO, description="'auto' (detect once per endpoint), 'json_schema', 'json_object' or 'none'."
    )
    temperature: float = Field(default=0.1)
    max_tokens: int = Field(default=200)

    def endpoints(self) -> list[Endpoint]:
        if self.committee:
            return [
                Endpoint(
                    base_url=member.base_url or self.base_url,
                    model=member.model,
                    api_key=(os.environ.get(member.api_key_env, "") if member.api_key_env else "") or (self.api_key or ""),
                    name=member.name,
                )
                for member in self.committee
            ]
        if self.model.strip() and (self.base_url.strip() or (self.api_key or "").strip()):
            return [Endpoint(self.base_url.strip(), self.model.strip(), self.api_key or "")]
        return []

    @property
    def configured(self) -> bool:
        return bool(self.endpoints())

    def effective_quorum(self, judges: int) -> int:
        return self.quorum if self.quorum > 0 else judges // 2 + 1

    def cell_scorer(self, day: str, cell_model_slug: str, warehouse: Location | None) -> JudgeCellScorer:
        prompt = JudgePrompt(temperature=self.temperature, max_tokens=self.max_tokens)
        endpoints = self.endpoints()
        judges = [
            JudgeClient(
                endpoint,
                prompt,
                concurrency=self.concurrency,
                retry=self.retry_policy(),
                structured_output=self.structured_output,
            )
            for endpoint in endpoints
        ]
        return JudgeCellScorer(
            judges,
            aggregate_method=self.aggregate,
            quorum=self.effective_quorum(len(judges)),
            cache=self.score_cache(warehouse) if judges else None,
            day=day,
            cell_model_slug=cell_model_slug,
            max_tries=self.non_ok_max_tries,
        )


class RagasResource(_ScoringSettings):
    """Ragas's LLM and embeddings endpoints, configured separately (MATERIALIZER_RAGAS_*)."""

    concurrency: int = Field(default=16, description="Requests in flight per endpoint.")
    timeout_s: float = Field(default=120.0, description="Timeout of one HTTP request, body included.")
    base_url: str = Field(default="", description="LLM endpoint (OpenAI-compatible base URL).")
    model: str = Field(default="", description="LLM model name; empty = Ragas not configured.")
    api_key: Optional[str] = Field(default="", description="LLM API key (never logged).")
    embeddings_base_url: str = Field(default="", description="Embeddings endpoint; default the LLM's.")
    embeddings_model: str = Field(default="", description="Embeddings model; empty = answer_relevancy not configured.")
    embeddings_api_key: Optional[str] = Field(default="", description="Embeddings API key; default the LLM's.")
    max_tokens: int = Field(default=2048, description="max_tokens of Ragas's LLM calls.")
    structured_output: str = Field(
        default="json_object",
        description="'json_object' (Ragas's default: response_format json_object) or 'none' (schema in the "
        "prompt, for servers that refuse response_format).",
    )
    metric_timeout_s: float = Field(default=600.0, description="Timeout of one metric of one trace (all its calls).")
    faithfulness_weight: float = Field(default=0.5)
    answer_relevancy_weight: float = Field(default=0.3)
    context_precision_weight: float = Field(default=0.2)

    def llm_endpoint(self) -> Endpoint | None:
        if self.model.strip() and (self.base_url.strip() or (self.api_key or "").strip()):
            return Endpoint(self.base_url.strip(), self.model.strip(), self.api_key or "")
        return None

    def embeddings_endpoint(self) -> Endpoint | None:
        if not self.embeddings_model.strip():
            return None
        return Endpoint(
            (self.embeddings_base_url or self.base_url).strip(),
            self.embeddings_model.strip(),
            self.embeddings_api_key or self.api_key or "",
        )

    @property
    def configured(self) -> bool:
        return self.llm_endpoint() is not None

    def weights(self) -> dict[str, float]:
        return {
            "faithfulness": self.faithfulness_weight,
            "answer_relevancy": self.answer_relevancy_weight,
            "context_precision": self.context_precision_weight,
        }

    def cell_scorer(self, day: str, cell_model_slug: str, warehouse: Location | None) -> RagasCellScorer:
        scorer = RagasScorer(
            self.llm_endpoint(),
            self.embeddings_endpoint(),
            concurrency=self.concurrency,
            retry=self.retry_policy(),
            metric_timeout_s=self.metric_timeout_s,
            max_tokens=self.max_tokens,
            structured_output=self.structured_output,
        )
        return RagasCellScorer(
            scorer,
            weights=self.weights(),
            cache=self.score_cache(warehouse) if scorer.configured else None,
            day=day,
            cell_model_slug=cell_model_slug,
            max_tries=self.non_ok_max_tries,
        )
