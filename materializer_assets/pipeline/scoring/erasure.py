"""GDPR erasure of the score cache: registered so the gdpr_erasure job always includes it.

The cache is not an asset (nothing declares it in metadata), so the erasure job
would not find it; :func:`register` adds it to every run. Where it lives:
``<warehouse>/score-cache`` (the default), plus the folder
``MATERIALIZER_SCORE_CACHE`` names when the scoring resources are configured
to keep it elsewhere. A cache that was never written stays out of the audit
records.
"""

from __future__ import annotations

import os
from typing import Iterable

from ...lib.erasure import ErasableOutput, ErasureEnvironment, register_erasable_output
from ...lib.scoring.cache import ScoreCache
from ...lib.scoring.cache_erasure import ScoreCacheOutput
from ...lib.storage import S3Options, resolve
from ...resources.scoring import CACHE_OFF

OUTPUT_NAME = "scoring.score_cache"
CACHE_LOCATION_ENV = "MATERIALIZER_SCORE_CACHE"


def score_cache_outputs(environment: ErasureEnvironment, env=None) -> list[ErasableOutput]:
    env = os.environ if env is None else env
    candidates: list[ScoreCacheOutput] = []
    if environment.lake is not None:
        root = ScoreCache.in_warehouse(environment.lake.root).root
        candidates.append(ScoreCacheOutput(root, stale_after=environment.orphan_grace))
    configured = (env.get(CACHE_LOCATION_ENV) or "").strip()
    if configured and configured.lower() != CACHE_OFF:
        root = resolve(configured, S3Options())
        if not any(c.root.uri.rstrip("/") == root.uri.rstrip("/") for c in candidates):
            candidates.append(ScoreCacheOutput(root, name=f"score-cache:{configured}", stale_after=environment.orphan_grace))
    # A warehouse that never had a score cache has nothing to erase.
    return [output for output in candidates if output.exists()]


def register() -> None:
    def outputs(environment: ErasureEnvironment) -> Iterable[ErasableOutput]:
        return score_cache_outputs(environment)

    register_erasable_output(OUTPUT_NAME, outputs)
