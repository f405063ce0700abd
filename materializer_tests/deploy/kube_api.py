"""A minimal Kubernetes API server on 127.0.0.1 that records the Jobs it is asked to create.

No cluster runs here, but the launcher's real client (the `kubernetes` package) still builds,
serializes and POSTs each Job over HTTP; this server keeps the JSON exactly as a cluster would
receive it. Jobs read back report one active pod, so run monitoring sees a healthy worker.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

JOBS_PATH = re.compile(r"^/apis/batch/v1/namespaces/(?P<namespace>[^/]+)/jobs(?:/(?P<name>[^/?]+))?(?:/status)?")


@dataclass
class RecordedJob:
    namespace: str
    body: dict


@dataclass
class FakeKubeApi:
    url: str
    jobs: list[RecordedJob] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path


def _handler(api: FakeKubeApi):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            match = JOBS_PATH.match(self.path)
            if not match or match.group("name"):
                self._send(404, {"kind": "Status", "status": "Failure", "code": 404})
                return
            created = {**body, "metadata": {**body.get("metadata", {}), "uid": str(uuid.uuid4())}}
            with api.lock:
                api.jobs.append(RecordedJob(match.group("namespace"), body))
            self._send(201, created)

        def do_GET(self):
            match = JOBS_PATH.match(self.path)
            if match and match.group("name"):
                with api.lock:
                    found = [job.body for job in api.jobs if job.body["metadata"]["name"] == match.group("name")]
                if found:
                    self._send(200, {**found[0], "status": {"active": 1}})
                    return
                self._send(404, {"kind": "Status", "status": "Failure", "code": 404})
                return
            # Pod and job lists (run monitoring, debug info): nothing beyond the active worker.
            self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})

        def do_DELETE(self):
            self._send(200, {"kind": "Status", "status": "Success"})

    return Handler


class running_fake_kube_api:
    """Context manager: a FakeKubeApi served on a free port of 127.0.0.1."""

    def __enter__(self) -> FakeKubeApi:
        self._api = FakeKubeApi(url="")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._api))
        self._api.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self._api

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
