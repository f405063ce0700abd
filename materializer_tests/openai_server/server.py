"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and the benchmark.

``/v1/chat/completions``, ``/v1/embeddings`` and ``/v1/models``, served by
uvicorn (a thread of the test process, or a process of its own with
``python -m materializer_tests.openai_server``). Behaviour is set by
:class:`ServerConfig` (changeable while running, also over
``POST /admin/config``) and by directives in the request text (see
:mod:`.replies`). Every request is counted (``/admin/stats``) so tests can
assert how many calls a run made.

Server-level knobs:

* ``latency_s`` — every reply takes this long;
* ``concurrency`` — at most this many requests are processed at once, the
  rest queue (like a vLLM replica's batch size);
* ``fail_next`` — HTTP statuses answered to the next requests, in order
  (429/5xx bursts); 429s carry ``Retry-After: 0``;
* ``stall_next`` — seconds the next chat requests wait before answering, in
  order (a timeout of one request);
* ``reject_json_schema`` — ``response_format`` type ``json_schema`` answers
  HTTP 500, as llama.cpp's server does; ``reject_response_format`` — any
  ``response_format`` answers HTTP 400.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from . import replies


@dataclass
class ServerConfig:
    latency_s: float = 0.0
    concurrency: int = 64
    fail_next: list = field(default_factory=list)
    stall_next: list = field(default_factory=list)
    reject_json_schema: bool = False
    reject_response_format: bool = False


@dataclass
class ServerStats:
    requests: int = 0
    chat: int = 0
    embeddings: int = 0
    by_model: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    by_response_format: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    authorizations: Counter = field(default_factory=Counter)  # Authorization headers seen
    in_flight: int = 0
    max_in_flight: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=200))

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "chat": self.chat,
            "embeddings": self.embeddings,
            "by_model": dict(self.by_model),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "by_response_format": dict(self.by_response_format),
            "by_kind": dict(self.by_kind),
            "max_in_flight": self.max_in_flight,
        }


class OpenAITestServer:
    """The server; ``start()`` runs it in a thread, ``base_url`` ends in ``/v1``."""

    def __init__(self, config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or ServerConfig()
        self.stats = ServerStats()
        self.host = host
        self.port = port
        self._failures_by_key: Counter = Counter()
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/admin/stats", self._admin_stats, methods=["GET"]),
                Route("/admin/config", self._admin_config, methods=["POST"]),
                Route("/admin/reset", self._admin_reset, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _uvicorn_server(self):
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30, backlog=4096,
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        return sock

    def start(self) -> "OpenAITestServer":
        sock = self._bind()
        self._server = self._uvicorn_server()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="openai-test-server")
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OpenAI test server did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        sock = self._bind()
        self._server = self._uvicorn_server()
        self._server.run(sockets=[sock])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "OpenAITestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget counts and one-shot state (failures seen per request)."""
        with self._lock:
            self.stats = ServerStats()
            self._failures_by_key.clear()

    # ------------------------------------------------------------ handlers

    def _slot(self) -> asyncio.Semaphore:
        if self._slots is None or self._slots_size != self.config.concurrency:
            self._slots = asyncio.Semaphore(self.config.concurrency)
            self._slots_size = self.config.concurrency
        return self._slots

    def _take_failure(self) -> int | None:
        with self._lock:
            if self.config.fail_next:
                return int(self.config.fail_next.pop(0))
        return None

    def _take_stall(self) -> float | None:
        with self._lock:
            if self.config.stall_next:
                return float(self.config.stall_next.pop(0))
        return None

    def _keyed_failure(self, key: str, spec: str) -> int | None:
        """``503x2``: the first 2 requests with this key fail with 503."""
        status, _, times = spec.partition("x")
        with self._lock:
            seen = self._failures_by_key[key]
            if seen < int(times or 1):
                self._failures_by_key[key] += 1
                return int(status)
        return None

    @staticmethod
    def _error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": "0"} if status == 429 else None
        return JSONResponse({"error": {"message": message, "type": "test_server", "code": status}}, status, headers=headers)

    async def _process(self, request: Request, handler) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "body is not JSON")
        self.stats.requests += 1
        self.stats.authorizations[request.headers.get("authorization", "")] += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            # The reply is computed first, so a slot is held for exactly the latency: the
            # server's own overhead stays out of the C / L it emulates.
            response = await handler(body)
            async with self._slot():
                if self.config.latency_s:
                    await asyncio.sleep(self.config.latency_s)
        finally:
            self.stats.in_flight -= 1
        self.stats.by_status[response.status_code] += 1
        return response

    async def _chat(self, request: Request) -> JSONResponse:
        return await self._process(request, self._chat_reply)

    async def _chat_reply(self, body: dict) -> JSONResponse:
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        text = "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        user_text = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        self.stats.chat += 1
        self.stats.by_model[model] += 1
        response_format = (body.get("response_format") or {}).get("type", "none")
        self.stats.by_response_format[response_format] += 1
        self.stats.recent.append(body)

        failure = self._take_failure()
        if failure:
            return self._error(failure, "injected failure")
        stall = self._take_stall()
        if stall:
            await asyncio.sleep(stall)
        if response_format != "none" and self.config.reject_response_format:
            return self._error(400, f"response_format {response_format} is not supported")
        if response_format == "json_schema" and self.config.reject_json_schema:
            return self._error(500, "JSON schema conversion failed")  # what llama.cpp's server does

        steer = replies.directives(text, model)
        kind = replies.ragas_kind(text)  # the whole conversation: instructor re-asks after a bad reply
        self.stats.by_kind[kind or ("judge" if replies.JUDGE in text else "other")] += 1
        if kind is not None and steer.get("ragas") == "fail500":
            return self._error(500, "injected ragas failure")
        if "fail" in steer:
            status = self._keyed_failure(f"{model}\x1f{text}", steer["fail"])
            if status:
                return self._error(status, "injected failure")
        if "sleep" in steer:
            await asyncio.sleep(float(steer["sleep"]))
        reply = steer.get("reply", "")
        if reply.startswith("garbagex"):  # garbage to the first N requests with this content, then a score
            garbage = self._keyed_failure(f"reply\x1f{model}\x1f{text}", f"1x{reply.removeprefix('garbagex')}")
            steer = {**steer, "reply": "garbage"} if garbage else {k: v for k, v in steer.items() if k != "reply"}
        if steer.get("reply") == "badbody":
            return PlainTextResponse("<html>502 Bad Gateway from a proxy</html>")  # HTTP 200, not JSON
        if steer.get("reply") == "nochoices":
            return JSONResponse({"id": "x", "object": "chat.completion", "model": model, "choices": []})
        content = replies.ragas_reply(kind, text, steer) if kind else replies.judge_reply(model, user_text, steer)
        prompt_tokens = max(1, len(text) // 4)
        completion_tokens = max(1, len(content) // 4)
        return JSONResponse(
            {
                "id": "chatcmpl-" + hashlib.sha1(text.encode()).hexdigest()[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _embeddings(self, request: Request) -> JSONResponse:
        return await self._process(request, self._embedding_reply)

    async def _embedding_reply(self, body: dict) -> JSONResponse:
        self.stats.embeddings += 1
        model = str(body.get("model", ""))
        self.stats.by_model[model] += 1
        failure = self._take_failure()
        if failure:
            return self._error(failure, "injected failure")
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts or not all(isinstance(t, str) for t in texts):
            return self._error(400, "input must be a string or a list of strings")
        encoding = body.get("encoding_format")
        data = [
            {"object": "embedding", "index": i, "embedding": replies.encode_embedding(replies.embedding(t), encoding)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(max(1, len(t) // 4) for t in texts)
        return JSONResponse(
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "test-judge", "object": "model", "owned_by": "tests"}]})

    async def _admin_stats(self, request: Request) -> JSONResponse:
        return JSONResponse({"stats": self.stats.as_dict(), "config": asdict(self.config)})

    async def _admin_config(self, request: Request) -> JSONResponse:
        changes = await request.json()
        for key, value in changes.items():
            if not hasattr(self.config, key):
                return self._error(400, f"unknown setting {key}")
            setattr(self.config, key, value)
        return JSONResponse(asdict(self.config))

    async def _admin_reset(self, request: Request) -> JSONResponse:
        self.reset()
        return JSONResponse({"reset": True})
