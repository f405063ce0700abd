"""The test server itself: what the other tests rely on."""

import asyncio
import json
import math
import urllib.request

import openai
import pytest

from materializer_tests.openai_server import replies


def _client(server):
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def test_embeddings_in_both_encodings_are_the_same_unit_vector(openai_server):
    async def run():
        client = _client(openai_server)
        try:
            as_base64 = await client.embeddings.create(model="emb", input=["sort a list", "bake bread"])
            as_float = await client.embeddings.create(model="emb", input="sort a list", encoding_format="float")
            return as_base64, as_float
        finally:
            await client.close()

    as_base64, as_float = asyncio.run(run())
    first = list(as_base64.data[0].embedding)
    assert first == pytest.approx(as_float.data[0].embedding, abs=1e-6)
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-5)
    assert len(first) == replies.EMBEDDING_DIMENSIONS
    assert as_base64.usage.prompt_tokens > 0


def test_server_concurrency_queues_the_rest(openai_server):
    openai_server.config.latency_s = 0.1
    openai_server.config.concurrency = 3

    async def run():
        client = _client(openai_server)
        try:
            await asyncio.gather(*(client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
                                   for i in range(9)))
        finally:
            await client.close()

    import time

    started = time.perf_counter()
    asyncio.run(run())
    assert time.perf_counter() - started >= 0.3  # 9 requests, 3 at a time, 0.1 s each


def test_admin_endpoints_count_and_reconfigure(openai_server):
    base = openai_server.base_url.removesuffix("/v1")
    request = urllib.request.Request(f"{base}/admin/config", data=json.dumps({"latency_s": 0.01}).encode(), method="POST")
    assert json.loads(urllib.request.urlopen(request).read())["latency_s"] == 0.01
    stats = json.loads(urllib.request.urlopen(f"{base}/admin/stats").read())
    assert stats["stats"]["requests"] == 0 and stats["config"]["latency_s"] == 0.01


def test_judge_scores_are_deterministic_and_in_range():
    assert replies.judge_score("a", "q", "x") == replies.judge_score("a", "q", "x")
    values = [replies.judge_score(m, "q", str(i)) for m in ("a", "random-b") for i in range(200)]
    assert all(0.0 <= v <= 1.0 for v in values)
