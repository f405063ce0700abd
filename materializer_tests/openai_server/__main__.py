"""Run the test server in a process of its own (used by benchmarks/judge_throughput.py).

    python -m materializer_tests.openai_server --port 8765 --latency 0.2 --concurrency 32
"""

from __future__ import annotations

import argparse

from .server import OpenAITestServer, ServerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per reply")
    parser.add_argument("--concurrency", type=int, default=64, help="requests processed at once")
    parser.add_argument("--reject-json-schema", action="store_true", help="answer json_schema with HTTP 500 (llama.cpp)")
    args = parser.parse_args()
    config = ServerConfig(latency_s=args.latency, concurrency=args.concurrency, reject_json_schema=args.reject_json_schema)
    server = OpenAITestServer(config, host=args.host, port=args.port)
    print(f"serving {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
