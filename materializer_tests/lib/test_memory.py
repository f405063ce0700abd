"""Process-level memory settings: Arrow's pool and glibc's malloc, each overridable by the operator."""

from __future__ import annotations

import os
import subprocess
import sys

from materializer_assets.lib.memory import release_free_memory

_POOL = "import materializer_assets, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"} | env
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_the_package_picks_jemalloc_for_arrow():
    assert _run(_POOL) == "jemalloc"


def test_an_operators_arrow_pool_wins():
    assert _run(_POOL, ARROW_DEFAULT_MEMORY_POOL="system") == "system"


def test_release_free_memory_gives_pages_back_after_a_large_free():
    code = (
        "import ctypes, materializer_assets\n"
        "from materializer_assets.lib.memory import release_free_memory\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "# many small blocks (below the mmap threshold) live on the heap, not in mappings\n"
        "blocks = [ctypes.create_string_buffer(50_000) for _ in range(4_000)]\n"
        "keep = blocks[-1]\n"
        "full = rss(); del blocks; release_free_memory()\n"
        "print(int((full - rss()) / 2**20))\n"
    )
    if not sys.platform.startswith("linux"):
        release_free_memory()  # a no-op elsewhere
        return
    assert int(_run(code)) > 100  # ~190 MB allocated, nearly all handed back
