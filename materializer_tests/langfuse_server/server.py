"""A Langfuse API server for contract tests: real HTTP on 127.0.0.1, answers from fixture data.

It serves one API version at a time, as a real server does:

- ``version="4.x"``: ``GET /api/public/v2/observations`` (cursor pagination,
  field groups, ``expandMetadata``, structured ``filter``), ``GET
  /api/public/v3/scores``; the v3-only endpoints answer 404 (removed in v4);
- ``version="3.x"``: ``GET /api/public/traces`` (+ ``/{traceId}``), ``GET
  /api/public/observations``, ``GET /api/public/v2/scores`` (page numbers);
  ``/api/public/v2/observations`` answers 404;
- both: ``GET /api/public/health`` (no auth), ``POST /api/public/scores``
  (upsert by id).

Every request and every response it serves is validated against
``contracts/langfuse/openapi.yml`` with openapi-core; problems are collected
in :attr:`LangfuseContractServer.violations` (the fixtures fail the test on
any). Injected faults (429, 5xx) are outside the spec's documented responses
and are not validated.

Switches: :meth:`fail` (429 + ``Retry-After``, 5xx; a number of times or for
ever), :meth:`slow` (delayed pages), ``cursor_mode`` (``normal``: no cursor on
the last page; ``null``: ``"cursor": null``; ``empty_pages``: an empty page
with a cursor between pages; ``trailing_empty``: the last data page still has
a cursor, then an empty page without one), and the fixture's late items
(:meth:`release_late`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .data import PROJECT_ID, FixtureData, FxObservation, FxScore, FxTrace

PUBLIC_KEY = "pk-lf-contract"
SECRET_KEY = "sk-lf-contract"
V4_FIELD_GROUPS = ("core", "basic", "time", "io", "metadata", "model", "usage", "prompt", "metrics", "trace_context")
METADATA_TRUNCATION = 200
CURSOR_MODES = ("normal", "null", "empty_pages", "trailing_empty")


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def raw_json(value: Any) -> str | None:
    """v4 keeps input/output as text: strings as they are, everything else as JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class BadRequest(Exception):
    pass


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the server keeps its own request log."""

    def log_request(self, *args, **kwargs) -> None:
        pass


@dataclass
class Fault:
    path: str
    status: int
    times: int | None  # None: for ever
    retry_after: str | None = None
    served: int = 0


@dataclass
class Delay:
    path: str
    seconds: float
    times: int | None
    served: int = 0


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int
    started: float
    body: Any = None


@dataclass
class LangfuseContractServer:
    data: FixtureData
    version: str = "4.2.0"
    spec_path: Path | None = None
    cursor_mode: str = "normal"
    public_key: str = PUBLIC_KEY
    secret_key: str = SECRET_KEY
    violations: list[str] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faults: list[Fault] = []
        self._delays: list[Delay] = []
        self._lock = threading.Lock()
        self._openapi = _load_openapi(self.spec_path) if self.spec_path else None
        self._server = None
        self._thread: threading.Thread | None = None
        self.url = ""
        routes = [
            Rule("/api/public/health", endpoint="health", methods=["GET"]),
            Rule("/api/public/scores", endpoint="create_score", methods=["POST"]),
        ]
        if self.major >= 4:
            routes += [
                Rule("/api/public/v2/observations", endpoint="observations_v2", methods=["GET"]),
                Rule("/api/public/v3/scores", endpoint="scores_v3", methods=["GET"]),
            ]
        else:
            routes += [
                Rule("/api/public/traces", endpoint="traces", methods=["GET"]),
                Rule("/api/public/traces/<trace_id>", endpoint="trace", methods=["GET"]),
                Rule("/api/public/observations", endpoint="observations_legacy", methods=["GET"]),
                Rule("/api/public/v2/scores", endpoint="scores_v2", methods=["GET"]),
            ]
        self._routes = Map(routes)

    @property
    def major(self) -> int:
        return int(self.version.lstrip("v").split(".")[0])

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "LangfuseContractServer":
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), name="langfuse-contract-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "LangfuseContractServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------ switches

    def fail(self, path: str, status: int = 429, times: int | None = 1, retry_after: str | None = None) -> None:
        """The next ``times`` requests to ``path`` (``None``: all of them) answer ``status``."""
        with self._lock:
            self._faults.append(Fault(path, status, times, retry_after))

    def slow(self, path: str, seconds: float, times: int | None = 1) -> None:
        with self._lock:
            self._delays.append(Delay(path, seconds, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()

    def release_late(self) -> None:
        self.data.release_late()

    def calls(self, path: str, method: str = "GET") -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------ WSGI

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        started = time.monotonic()
        injected = self._injected(request.path)
        if injected is not None:
            response = injected
        else:
            response = self._answer(request)
        with self._lock:
            body = None
            if request.method == "POST":
                try:
                    body = json.loads(request.get_data(as_text=True) or "null")
                except ValueError:
                    body = None
            self.requests.append(
                LoggedRequest(request.method, request.path, dict(request.args), response.status_code, started, body)
            )
        return response(environ, start_response)

    def _injected(self, path: str) -> Response | None:
        delay = 0.0
        fault: Fault | None = None
        with self._lock:
            for candidate in self._delays:
                if candidate.path == path and (candidate.times is None or candidate.served < candidate.times):
                    candidate.served += 1
                    delay = candidate.seconds
                    break
            for candidate in self._faults:
                if candidate.path == path and (candidate.times is None or candidate.served < candidate.times):
                    candidate.served += 1
                    fault = candidate
                    break
        if delay:
            time.sleep(delay)
        if fault is None:
            return None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        message = "rate limit exceeded" if fault.status == 429 else "injected server error"
        return Response(
            json.dumps({"message": message}), status=fault.status, headers=headers, mimetype="application/json"
        )

    def _answer(self, request: Request) -> Response:
        adapter = self._routes.bind_to_environ(request.environ)
        try:
            endpoint, arguments = adapter.match()
        except NotFound:
            return _json({"message": f"not found: {request.path}"}, 404)
        except HTTPException as exc:
            return _json({"message": str(exc)}, exc.code or 400)
        if endpoint != "health" and not self._authorized(request):
            response = _json({"message": "Invalid credentials"}, 401)
        else:
            problem = self._validate_request(request)
            if problem:
                response = _json({"message": problem}, 400)
            else:
                try:
                    body = getattr(self, f"_{endpoint}")(request, **arguments)
                    response = _json(body, 200)
                except BadRequest as exc:
                    response = _json({"message": str(exc)}, 400)
                except LookupError as exc:
                    response = _json({"message": str(exc)}, 404)
        self._validate_response(request, response)
        return response

    def _authorized(self, request: Request) -> bool:
        auth = request.authorization
        return (
            auth is not None
            and auth.type == "basic"
            and auth.username == self.public_key
            and auth.password == self.secret_key
        )

    # ------------------------------------------------------------ spec validation

    def _validate_request(self, request: Request) -> str | None:
        if self._openapi is None:
            return None
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

        try:
            self._openapi.validate_request(WerkzeugOpenAPIRequest(request))
        except Exception as exc:  # any deviation from the spec is the client's bug
            message = f"request {request.method} {request.full_path}: {_explain(exc)}"
            with self._lock:
                self.violations.append(message)
            return message
        return None

    def _validate_response(self, request: Request, response: Response) -> None:
        if self._openapi is None:
            return
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse

        try:
            self._openapi.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        except Exception as exc:
            name = type(exc).__name__
            if response.status_code == 404 and name in ("PathNotFound", "OperationNotFound"):
                return  # a path this version does not serve
            with self._lock:
                self.violations.append(
                    f"response to {request.method} {request.full_path} ({response.status_code}): {_explain(exc)}"
                )

    # ------------------------------------------------------------ endpoints: both versions

    def _health(self, request: Request) -> dict:
        return {"version": self.version, "status": "OK"}

    def _create_score(self, request: Request) -> dict:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        data_type = body.get("dataType") or "NUMERIC"
        value = body.get("value")
        if data_type in ("NUMERIC", "BOOLEAN") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadRequest("numeric and boolean scores take a number")
        if data_type == "BOOLEAN" and value not in (0, 1):
            raise BadRequest("boolean scores are 0 or 1")
        if not body.get("traceId"):
            raise BadRequest("traceId is required for trace scores")
        score_id = body.get("id") or str(uuid.uuid4())
        stored_value: Any = bool(value) if data_type == "BOOLEAN" else value
        self.data.add(
            FxScore(
                id=score_id,
                trace_id=body["traceId"],
                name=body["name"],
                value=stored_value,
                data_type=data_type,
                source="API",
                timestamp=datetime.now(timezone.utc),
                observation_id=body.get("observationId"),
                comment=body.get("comment"),
                metadata=body.get("metadata"),
                environment=body.get("environment") or "default",
            )
        )
        return {"id": score_id}

    # ------------------------------------------------------------ v4

    def _observations_v2(self, request: Request) -> dict:
        args = request.args
        if args.get("parseIoAsJson") == "true":
            raise BadRequest("parseIoAsJson is deprecated")
        groups = _field_groups(args.get("fields"))
        limit = _limit(args.get("limit"), default=50, maximum=1000)
        expand = {key.strip() for key in (args.get("expandMetadata") or "").split(",") if key.strip()}
        match = _observation_filter(args)
        traces = self.data.traces
        items = [o for o in self.data.visible_observations() if match(o, traces[o.trace_id])]
        items.sort(key=lambda o: (o.start_time, o.id), reverse=True)  # always startTime descending
        page, cursor = self._cursor_page(items, args.get("cursor"), limit, key=lambda o: (iso(o.start_time), o.id))
        return {
            "data": [self._observation_v2(o, traces[o.trace_id], groups, expand) for o in page],
            "meta": (
                {"cursor": cursor} if cursor is not None else ({"cursor": None} if self.cursor_mode == "null" else {})
            ),
        }

    def _cursor_page(self, items: list, cursor: str | None, limit: int, key: Callable) -> tuple[list, str | None]:
        """Keyset pagination after the item named by ``cursor``, with the cursor_mode quirks."""
        state = _decode_cursor(cursor) if cursor else {}
        if state.get("end"):
            return [], None
        if self.cursor_mode == "empty_pages" and state and not state.get("empty_served"):
            return [], _encode_cursor({**state, "empty_served": True})
        if "last" in state:
            last = tuple(state["last"])
            items = [item for item in items if key(item) < last]
        page = items[:limit]
        more = len(items) > limit
        if more:
            return page, _encode_cursor({"last": list(key(page[-1]))})
        if self.cursor_mode == "trailing_empty" and page:
            return page, _encode_cursor({"end": True})
        return page, None

    def _observation_v2(self, o: FxObservation, trace: FxTrace, groups: set[str], expand: set[str]) -> dict:
        item: dict[str, Any] = {
            "id": o.id,
            "traceId": o.trace_id,
            "startTime": iso(o.start_time),
            "endTime": iso(o.end_time),
            "projectId": PROJECT_ID,
            "parentObservationId": o.parent_observation_id,
            "type": o.type,
            "modelId": None,
            "inputPrice": None,
            "outputPrice": None,
            "totalPrice": None,
        }
        if "basic" in groups:
            item.update(
                name=o.name,
                level=o.level,
                statusMessage=None,
                version=trace.version,
                environment=o.environment,
                bookmarked=False,
                public=False,
                userId=trace.user_id,
                sessionId=trace.session_id,
                isRootObservation=o.parent_observation_id is None,
            )
        if "time" in groups:
            item.update(
                completionStartTime=None,
                createdAt=iso(o.start_time),
                updatedAt=iso(o.updated_at or o.end_time or o.start_time),
            )
        if "io" in groups:
            item.update(input=raw_json(o.input), output=raw_json(o.output))
        if "metadata" in groups:
            # v4 observations carry the trace's attributes (propagated), values as text.
            merged = {**trace.metadata, **o.metadata}
            item["metadata"] = {
                key: value if key in expand or len(value) <= METADATA_TRUNCATION else value[:METADATA_TRUNCATION]
                for key, value in ((k, v if isinstance(v, str) else json.dumps(v)) for k, v in merged.items())
            }
        if "model" in groups:
            item.update(
                providedModelName=o.model,
                internalModelId="model-internal-1" if o.model else None,
                modelParameters=o.model_parameters,
                modelId="model-internal-1" if o.model else None,
                inputPrice="0.00000015" if o.model else None,
                outputPrice="0.0000006" if o.model else None,
                totalPrice=None,
            )
        if "usage" in groups:
            item.update(
                usageDetails=dict(o.usage) or None,
                costDetails=dict(o.cost) or None,
                totalCost=o.cost.get("total"),
                usagePricingTierName=None,
            )
        if "prompt" in groups:
            item.update(promptId=None, promptName=None, promptVersion=None)
        if "metrics" in groups:
            item.update(latency=_latency(o), timeToFirstToken=None)
        if "trace_context" in groups:
            item.update(tags=list(trace.tags), release=trace.release, traceName=trace.name)
        return item

    def _scores_v3(self, request: Request) -> dict:
        args = request.args
        limit = _limit(args.get("limit"), default=50, maximum=100)
        groups = _csv(args.get("fields"))
        unknown = groups - {"details", "subject", "annotation"}
        if unknown:
            raise BadRequest(f"unknown field groups: {sorted(unknown)}")
        if args.get("observationId") and not args.get("traceId"):
            raise BadRequest("observationId requires traceId")
        scores = self._filtered_scores(args)
        scores.sort(key=lambda s: (iso(s.timestamp), s.id), reverse=True)
        offset = int(_decode_cursor(args["cursor"], urlsafe=True).get("offset", 0)) if args.get("cursor") else 0
        page = scores[offset : offset + limit]
        meta: dict[str, Any] = {"limit": limit}
        if offset + limit < len(scores):
            meta["cursor"] = _encode_cursor({"offset": offset + limit}, urlsafe=True)
        return {"data": [self._score_v3(s, groups) for s in page], "meta": meta}

    def _score_v3(self, s: FxScore, groups: set[str]) -> dict:
        item: dict[str, Any] = {
            "id": s.id,
            "projectId": PROJECT_ID,
            "name": s.name,
            "source": s.source,
            "timestamp": iso(s.timestamp),
            "environment": s.environment,
            "createdAt": iso(s.timestamp),
            "updatedAt": iso(s.timestamp),
            "dataType": s.data_type,
            "value": bool(s.value) if s.data_type == "BOOLEAN" else s.value,
        }
        if "details" in groups:
            item.update(comment=s.comment, configId=None, metadata=s.metadata)
        if "annotation" in groups:
            item.update(authorUserId=None, queueId=None)
        if "subject" in groups:
            item["subject"] = (
                {"kind": "observation", "id": s.observation_id, "traceId": s.trace_id}
                if s.observation_id
                else {"kind": "trace", "id": s.trace_id}
            )
        return item

    def _filtered_scores(self, args) -> list[FxScore]:
        trace_ids = _csv(args.get("traceId"))
        ids = _csv(args.get("id")) | _csv(args.get("scoreIds"))
        names = _csv(args.get("name"))
        data_types = {value.upper() for value in _csv(args.get("dataType"))}
        sources = {value.upper() for value in _csv(args.get("source"))}
        since = parse_time(args.get("fromTimestamp"))
        until = parse_time(args.get("toTimestamp"))
        return [
            s
            for s in self.data.visible_scores()
            if (not trace_ids or s.trace_id in trace_ids)
            and (not ids or s.id in ids)
            and (not names or s.name in names)
            and (not data_types or s.data_type in data_types)
            and (not sources or s.source in sources)
            and (since is None or s.timestamp >= since)
            and (until is None or s.timestamp < until)
        ]

    # ------------------------------------------------------------ v3

    def _traces(self, request: Request) -> dict:
        args = request.args
        limit = _limit(args.get("limit"), default=50, maximum=100)
        page = _page(args.get("page"))
        groups = _csv(args.get("fields")) or {"core", "io", "scores", "observations", "metrics"}
        since = parse_time(args.get("fromTimestamp"))
        until = parse_time(args.get("toTimestamp"))
        traces = [
            t
            for t in self.data.visible_traces()
            if (since is None or t.timestamp >= since) and (until is None or t.timestamp < until)
        ]
        order = args.get("orderBy") or "timestamp.desc"
        if order not in ("timestamp.asc", "timestamp.desc"):
            raise BadRequest(f"unsupported orderBy {order!r}")
        traces.sort(key=lambda t: (t.timestamp, t.id), reverse=order.endswith("desc"))
        chunk = traces[(page - 1) * limit : page * limit]
        wanted = {t.id for t in chunk}
        observations: dict[str, list[FxObservation]] = {}
        for o in self.data.visible_observations():
            if o.trace_id in wanted:
                observations.setdefault(o.trace_id, []).append(o)
        scores: dict[str, list[FxScore]] = {}
        for score in self.data.visible_scores():
            if score.trace_id in wanted:
                scores.setdefault(score.trace_id, []).append(score)
        return {
            "data": [self._trace_v3(t, groups, observations.get(t.id, []), scores.get(t.id, [])) for t in chunk],
            "meta": _page_meta(page, limit, len(traces)),
        }

    def _trace_v3(
        self, t: FxTrace, groups: set[str], observations: list[FxObservation], scores: list[FxScore]
    ) -> dict:
        item: dict[str, Any] = {
            "id": t.id,
            "timestamp": iso(t.timestamp),
            "name": t.name,
            "sessionId": t.session_id,
            "release": t.release,
            "version": t.version,
            "userId": t.user_id,
            "tags": list(t.tags),
            "public": False,
            "environment": t.environment,
            "htmlPath": f"/project/{PROJECT_ID}/traces/{t.id}",
            "observations": [o.id for o in observations] if "observations" in groups else [],
            "scores": [s.id for s in scores] if "scores" in groups else [],
            "latency": _trace_latency(t, observations) if "metrics" in groups else -1,
            "totalCost": sum(o.cost.get("total", 0.0) for o in observations) if "metrics" in groups else -1,
        }
        if "io" in groups:
            item.update(input=t.input, output=t.output, metadata=t.metadata)
        return item

    def _trace(self, request: Request, trace_id: str) -> dict:
        trace = self.data.traces.get(trace_id)
        if trace is None or trace.late:
            raise LookupError(f"trace {trace_id} not found")
        observations = [o for o in self.data.visible_observations() if o.trace_id == trace_id]
        scores = [score for score in self.data.visible_scores() if score.trace_id == trace_id]
        item = self._trace_v3(trace, {"core", "io", "metrics"}, observations, scores)
        item["observations"] = [self._observation_legacy(o) for o in observations]
        item["scores"] = [self._score_v2(score, with_trace=False) for score in scores]
        return item

    def _observations_legacy(self, request: Request) -> dict:
        args = request.args
        limit = _limit(args.get("limit"), default=50, maximum=1000)
        page = _page(args.get("page"))
        match = _observation_filter(args)
        traces = self.data.traces
        items = [o for o in self.data.visible_observations() if match(o, traces[o.trace_id])]
        items.sort(key=lambda o: (o.start_time, o.id), reverse=True)
        chunk = items[(page - 1) * limit : page * limit]
        return {"data": [self._observation_legacy(o) for o in chunk], "meta": _page_meta(page, limit, len(items))}

    def _observation_legacy(self, o: FxObservation) -> dict:
        usage = o.usage or {}
        return {
            "id": o.id,
            "traceId": o.trace_id,
            "type": o.type,
            "name": o.name,
            "startTime": iso(o.start_time),
            "endTime": iso(o.end_time),
            "completionStartTime": None,
            "model": o.model,
            "modelParameters": o.model_parameters,
            "input": o.input,
            "version": None,
            "metadata": dict(o.metadata),  # v3: the observation's own metadata
            "output": o.output,
            "usage": {
                "input": usage.get("input", 0),
                "output": usage.get("output", 0),
                "total": usage.get("total", 0),
                "unit": "TOKENS",
            },
            "level": o.level,
            "statusMessage": None,
            "parentObservationId": o.parent_observation_id,
            "promptId": None,
            "usageDetails": dict(usage),
            "costDetails": dict(o.cost),
            "environment": o.environment,
            "promptName": None,
            "promptVersion": None,
            "modelId": "model-internal-1" if o.model else None,
            "inputPrice": None,
            "outputPrice": None,
            "totalPrice": None,
            "calculatedInputCost": o.cost.get("input"),
            "calculatedOutputCost": o.cost.get("output"),
            "calculatedTotalCost": o.cost.get("total"),
            "latency": _latency(o),
            "timeToFirstToken": None,
        }

    def _scores_v2(self, request: Request) -> dict:
        args = request.args
        limit = _limit(args.get("limit"), default=50, maximum=100)
        page = _page(args.get("page"))
        groups = _csv(args.get("fields")) or {"score", "trace"}
        scores = self._filtered_scores(args)
        scores.sort(key=lambda s: (iso(s.timestamp), s.id), reverse=True)
        chunk = scores[(page - 1) * limit : page * limit]
        return {
            "data": [self._score_v2(s, with_trace="trace" in groups) for s in chunk],
            "meta": _page_meta(page, limit, len(scores)),
        }

    def _score_v2(self, s: FxScore, with_trace: bool) -> dict:
        item: dict[str, Any] = {
            "id": s.id,
            "traceId": s.trace_id,
            "sessionId": None,
            "observationId": s.observation_id,
            "datasetRunId": None,
            "name": s.name,
            "source": s.source,
            "timestamp": iso(s.timestamp),
            "createdAt": iso(s.timestamp),
            "updatedAt": iso(s.timestamp),
            "authorUserId": None,
            "comment": s.comment,
            "metadata": s.metadata,
            "configId": None,
            "queueId": None,
            "environment": s.environment,
            "dataType": s.data_type,
        }
        if s.data_type == "BOOLEAN":
            item.update(value=1.0 if s.value else 0.0, stringValue="True" if s.value else "False")
        elif s.data_type == "CATEGORICAL":
            item.update(value=0.0, stringValue=str(s.value))
        else:
            item["value"] = float(s.value)
        if with_trace:
            trace = self.data.traces[s.trace_id]
            item["trace"] = {
                "userId": trace.user_id,
                "tags": list(trace.tags),
                "environment": trace.environment,
                "sessionId": trace.session_id,
            }
        return item


# ---------------------------------------------------------------- helpers


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def _explain(exc: Exception) -> str:
    details = [str(exc)]
    for attribute in ("schema_errors", "errors"):
        for error in getattr(exc, attribute, None) or []:
            details.append(str(getattr(error, "message", error))[:300])
    if exc.__cause__ is not None:
        details.append(str(exc.__cause__)[:500])
    return " | ".join(details)[:2000]


def _csv(value: str | None) -> set[str]:
    return {item.strip() for item in (value or "").split(",") if item.strip()}


def _limit(value: str | None, default: int, maximum: int) -> int:
    limit = int(value) if value else default
    if limit < 1 or limit > maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}")
    return limit


def _page(value: str | None) -> int:
    page = int(value) if value else 1
    if page < 1:
        raise BadRequest("page starts at 1")
    return page


def _page_meta(page: int, limit: int, total: int) -> dict:
    return {"page": page, "limit": limit, "totalItems": total, "totalPages": (total + limit - 1) // limit}


def _field_groups(value: str | None) -> set[str]:
    groups = _csv(value) or {"core", "basic"}
    unknown = groups - set(V4_FIELD_GROUPS)
    if unknown:
        raise BadRequest(f"unknown field groups: {sorted(unknown)}")
    return groups | {"core"}


def _encode_cursor(state: dict, urlsafe: bool = False) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


def _decode_cursor(cursor: str, urlsafe: bool = False) -> dict:
    try:
        return json.loads((base64.urlsafe_b64decode if urlsafe else base64.b64decode)(cursor.encode()))
    except ValueError as exc:
        raise BadRequest(f"invalid cursor: {exc}") from exc


def _latency(o: FxObservation) -> float | None:
    return None if o.end_time is None else (o.end_time - o.start_time).total_seconds()


def _trace_latency(t: FxTrace, observations: list[FxObservation]) -> float | None:
    ends = [o.end_time for o in observations if o.end_time is not None]
    return (max(ends) - t.timestamp).total_seconds() if ends else None


_FILTER_COLUMNS: dict[str, Callable[[FxObservation, FxTrace], Any]] = {
    "type": lambda o, t: o.type,
    "name": lambda o, t: o.name,
    "traceId": lambda o, t: o.trace_id,
    "startTime": lambda o, t: o.start_time,
    "endTime": lambda o, t: o.end_time,
    "model": lambda o, t: o.model,
    "providedModelName": lambda o, t: o.model,
    "userId": lambda o, t: t.user_id,
    "sessionId": lambda o, t: t.session_id,
    "environment": lambda o, t: o.environment,
    "level": lambda o, t: o.level,
}


def _observation_filter(args) -> Callable[[FxObservation, FxTrace], bool]:
    """The ``filter`` JSON when given (it takes precedence), else the query parameters."""
    if args.get("filter"):
        try:
            conditions = json.loads(args["filter"])
        except ValueError as exc:
            raise BadRequest(f"filter is not JSON: {exc}") from exc
        if not isinstance(conditions, list):
            raise BadRequest("filter must be a JSON array")
        checks = [_condition(condition) for condition in conditions]
        return lambda o, t: all(check(o, t) for check in checks)
    since = parse_time(args.get("fromStartTime"))
    until = parse_time(args.get("toStartTime"))
    simple = {
        name: args.get(name) for name in ("type", "name", "traceId", "userId", "sessionId", "level") if args.get(name)
    }
    return lambda o, t: (
        (since is None or o.start_time >= since)
        and (until is None or o.start_time < until)
        and all(_FILTER_COLUMNS[name](o, t) == value for name, value in simple.items())
    )


def _condition(condition: Any) -> Callable[[FxObservation, FxTrace], bool]:
    if not isinstance(condition, dict) or condition.get("column") not in _FILTER_COLUMNS:
        raise BadRequest(f"unsupported filter condition {condition!r}")
    column = _FILTER_COLUMNS[condition["column"]]
    kind, operator, value = condition.get("type"), condition.get("operator"), condition.get("value")
    if kind == "string" and operator == "=":
        return lambda o, t: column(o, t) == value
    if kind == "stringOptions" and operator in ("any of", "none of") and isinstance(value, list):
        return (
            (lambda o, t: column(o, t) in value) if operator == "any of" else (lambda o, t: column(o, t) not in value)
        )
    if kind == "null" and operator in ("is null", "is not null"):
        return (lambda o, t: column(o, t) is None) if operator == "is null" else (lambda o, t: column(o, t) is not None)
    if kind == "datetime" and operator in (">", "<", ">=", "<="):
        bound = parse_time(value)
        compare = {
            ">": lambda a: a > bound,
            "<": lambda a: a < bound,
            ">=": lambda a: a >= bound,
            "<=": lambda a: a <= bound,
        }[operator]
        return lambda o, t: column(o, t) is not None and compare(column(o, t))
    raise BadRequest(f"unsupported filter condition {condition!r}")


_OPENAPI_CACHE: dict[Path, Any] = {}


def _load_openapi(path: Path):
    """The spec, parsed once per process (it is 17k lines)."""
    path = Path(path).resolve()
    if path not in _OPENAPI_CACHE:
        import yaml
        from openapi_core import Config, OpenAPI

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with path.open() as handle:
            spec = yaml.load(handle, Loader=loader)
        # The spec uses a few JSON-Schema keywords (const) that a strict OpenAPI 3.0
        # check rejects; the schemas themselves validate fine.
        _OPENAPI_CACHE[path] = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    return _OPENAPI_CACHE[path]
