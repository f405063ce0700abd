"""Judge throughput against the OpenAI-compatible test server, and the cost of a re-run.

The server (its own process, ``python -m materializer_tests.openai_server``)
answers every request after ``--latency`` seconds and processes at most
``--server-concurrency`` requests at once, like one vLLM replica: its ideal
throughput is C / L requests per second. We score ``--traces`` traces of one
cell through the same code the ``judge_scores`` asset runs (``JudgeClient``
→ ``JudgeCellScorer`` → ``score_stream``, with the score cache in a
temporary warehouse) and print the achieved throughput against that ideal
(target ≥ 90 %); then score the same cell again and print how many calls the
second run made (target 0).

    python benchmarks/judge_throughput.py                       # 2,000 traces, L = 0.25 s, C = 32
    python benchmarks/judge_throughput.py --traces 5000 --latency 0.05 --server-concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def start_server(latency: float, concurrency: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "materializer_tests.openai_server", "--port", str(port),
         "--latency", str(latency), "--concurrency", str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(f"{base}/v1/models")
            return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the test server did not start")
            time.sleep(0.1)


def make_traces(n: int):
    import pyarrow as pa

    from materializer_assets.lib.scoring.inputs import INPUT_COLUMNS

    # The columns scoring reads, built directly (normalizing is not what we measure).
    data = {
        "trace_id": [f"bench-{i}" for i in range(n)],
        "observation_id": [None] * n,
        "content_hash": [f"{i:032x}" for i in range(n)],
        "date": ["2026-04-18"] * n,
        "model_slug": ["bench-model"] * n,
        "prompt": [f"Question {i}: how do I configure autoscaling for an inference service?" for i in range(n)],
        "response": [f"Answer {i}: set minReplicas and a Prometheus trigger on running requests. " * 4 for i in range(n)],
        "contexts": [None] * n,
        "user_id": [f"bench-user-{i % 97}" for i in range(n)],
        "timestamp": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "consent": [True] * n,
        "consent_source": ["column"] * n,
    }
    return pa.table({name: data[name] for name in INPUT_COLUMNS})


def score_cell(base_url: str, table, warehouse: str, concurrency: int) -> tuple[float, dict]:
    from materializer_assets.lib.scoring.cache import ScoreCache
    from materializer_assets.lib.scoring.inputs import INPUT_COLUMNS, InputStats, consented_only, scan_batches
    from materializer_assets.lib.scoring.judge import Endpoint, JudgeClient
    from materializer_assets.lib.scoring.runner import JudgeCellScorer, score_stream
    from materializer_assets.lib.storage import resolve

    judge = JudgeClient(Endpoint(f"{base_url}/v1", "bench-judge"), concurrency=concurrency)
    scorer = JudgeCellScorer(
        [judge], cache=ScoreCache.in_warehouse(resolve(warehouse)), day="2026-04-18", cell_model_slug="bench-model"
    )
    started = time.perf_counter()
    rows = statuses = 0
    batches = consented_only(scan_batches(table, INPUT_COLUMNS), InputStats())
    for batch in score_stream(scorer, batches, chunk_rows=4 * concurrency):
        rows += batch.num_rows
    elapsed = time.perf_counter() - started
    meta = scorer.metadata()
    statuses = meta["status_counts"]
    if rows != table.num_rows or statuses != {"ok": rows}:
        raise RuntimeError(f"unexpected result: {rows} rows, statuses {statuses}")
    return elapsed, meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per reply (L)")
    parser.add_argument("--server-concurrency", type=int, default=32, help="requests the server processes at once (C)")
    parser.add_argument("--client-concurrency", type=int, default=0, help="our requests in flight; default C")
    args = parser.parse_args()
    client_concurrency = args.client_concurrency or args.server_concurrency

    process, base = start_server(args.latency, args.server_concurrency)
    try:
        table = make_traces(args.traces)
        with tempfile.TemporaryDirectory(prefix="bench-judge-") as warehouse:
            elapsed, meta = score_cell(base, table, warehouse, client_concurrency)
            first_calls = _get(f"{base}/admin/stats")["stats"]["requests"]
            again, again_meta = score_cell(base, table, warehouse, client_concurrency)
            second_calls = _get(f"{base}/admin/stats")["stats"]["requests"] - first_calls
    finally:
        process.terminate()
        process.wait(timeout=10)

    ideal = args.server_concurrency / args.latency
    achieved = args.traces / elapsed
    ratio = achieved / ideal
    print(f"traces {args.traces}, server latency L = {args.latency:g} s, server concurrency C = {args.server_concurrency}, "
          f"client concurrency {client_concurrency}")
    print(f"first run:  {elapsed:.2f} s, {first_calls} calls, achieved {achieved:.1f} req/s vs ideal C/L = {ideal:.1f} req/s "
          f"→ {ratio:.1%} of ideal (target ≥ 90%) {'PASS' if ratio >= 0.9 else 'FAIL'}")
    print(f"            latency p50 {meta['latency_p50_ms']} ms, p95 {meta['latency_p95_ms']} ms, "
          f"tokens in/out {meta['input_tokens']}/{meta['output_tokens']}")
    print(f"second run: {again:.2f} s, {second_calls} calls, {again_meta['cache_hits']} cache hits "
          f"(target 0 calls) {'PASS' if second_calls == 0 else 'FAIL'}")
    return 0 if ratio >= 0.9 and second_calls == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
