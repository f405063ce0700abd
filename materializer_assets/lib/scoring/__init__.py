"""Scoring traces: the LLM judge (fleet or committee) and Ragas metrics (DESIGN §6).

Pure logic, no Dagster: prompts and reply parsing, HTTP with bounded
concurrency and retries, the committee's aggregation and agreement, Ragas
wrapped call by call, the score cache in the warehouse, and the streaming
cell runner the ``judge_scores`` / ``ragas_scores`` assets call.
"""

from .cache import ScoreCache
from .committee import AlphaAccumulator, aggregate, krippendorff_alpha_interval
from .http import EndpointStats, RequestGuard, RetryPolicy
from .judge import Endpoint, JudgeClient, JudgeOutcome
from .parsing import ParsedScore, parse_judge_reply
from .prompt import JudgePrompt
from .ragas_metrics import RagasScorer, ragas_reward
from .runner import JudgeCellScorer, RagasCellScorer, score_stream
from .schema import JUDGE_SCORES_SCHEMA, RAGAS_SCORES_SCHEMA

__all__ = [
    "AlphaAccumulator",
    "Endpoint",
    "EndpointStats",
    "RequestGuard",
    "JUDGE_SCORES_SCHEMA",
    "JudgeCellScorer",
    "JudgeClient",
    "JudgeOutcome",
    "JudgePrompt",
    "ParsedScore",
    "RAGAS_SCORES_SCHEMA",
    "RagasCellScorer",
    "RagasScorer",
    "RetryPolicy",
    "ScoreCache",
    "aggregate",
    "krippendorff_alpha_interval",
    "parse_judge_reply",
    "ragas_reward",
    "score_stream",
]
