"""The docs test: README.md and docs/*.md say only what runs.

Every fenced shell block (``bash``, ``sh``, ``shell``, ``console``) and every ``python`` block is
run, in reading order (the README, then the pages in the order its Documentation list links them),
in one scratch copy of the repository with the built-in defaults: the README's ``materializer run``
materializes the bundled sample once and later blocks use what it wrote. A block that cannot run
here carries its reason in the fence's info string (```` ```bash {skip: needs a Kubernetes
cluster} ````) and is reported as a skip; a command block that is neither runnable nor marked
fails. Every relative link must resolve. The convention is described in docs/testing.md.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_BYTES = 10_000

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PYTHON_LANGUAGES = {"python", "py"}
SKIP_MARKER = re.compile(r"^\{skip:\s*(?P<reason>[^{}]*?\S)\s*\}$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
# Variables that would point a run at something other than the bundled sample and its defaults.
SCRUBBED_PREFIXES = ("MATERIALIZER_", "LANGFUSE_", "PYICEBERG_", "OPENAI_", "DAGSTER_HOME")
BLOCK_TIMEOUT_SECONDS = 600
COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".materializer", "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", "build", "dist", ".venv", "venv"
)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository, e.g. "docs/quickstart.md"
    line: int  # 1-based line of the opening fence
    language: str
    skip: str | None
    problem: str | None  # why the block is malformed (an unknown marker, no language, indented)
    body: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.problem is None and self.skip is None and self.language in SHELL_LANGUAGES | PYTHON_LANGUAGES


@dataclass
class Page:
    path: Path
    tokens: list = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.relative_to(REPO).as_posix()


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@lru_cache(maxsize=None)
def _page(path: Path) -> Page:
    return Page(path, _parser().parse(path.read_text(encoding="utf-8")))


def _page_from_text(text: str, path: Path = DOCS / "example.md") -> Page:
    return Page(path, _parser().parse(text))


def _links(page: Page) -> list[tuple[int, str]]:
    """(line, target) of every link and image of the page."""
    found = []
    for token in page.tokens:
        if token.type != "inline":
            continue
        for child in token.children or []:
            target = child.attrGet("href") if child.type == "link_open" else child.attrGet("src") if child.type == "image" else None
            if target is not None:
                found.append((token.map[0] + 1, target))
    return found


def _is_relative(target: str) -> bool:
    return not SCHEME.match(target)


def _resolve(page: Page, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    resolved = (page.path.parent / unquote(path)).resolve() if path else page.path
    return resolved, anchor


def pages() -> list[Page]:
    """The README, then every docs page in the order the README links them (unlinked ones last)."""
    readme = _page(README)
    ordered: list[Path] = []
    for _, target in _links(readme):
        if _is_relative(target):
            path, _ = _resolve(readme, target)
            if path.parent == DOCS and path.suffix == ".md" and path.exists() and path not in ordered:
                ordered.append(path)
    ordered += [path for path in sorted(DOCS.glob("*.md")) if path not in ordered]
    return [readme] + [_page(path) for path in ordered]


def github_slug(text: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped (``-`` and ``_`` kept), spaces → ``-``."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def heading_ids(page: Page) -> set[str]:
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for opening, inline in zip(page.tokens, page.tokens[1:]):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
        slug = github_slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def code_blocks(page: Page) -> list[Block]:
    blocks = []
    for token in page.tokens:
        line = token.map[0] + 1 if token.map else 0
        if token.type == "code_block":
            blocks.append(Block(page.name, line, "", None, "an indented code block: fence it with a language", token.content))
        elif token.type == "fence":
            language, _, rest = token.info.strip().partition(" ")
            rest = rest.strip()
            skip = problem = None
            if not language:
                problem = "a fence without a language (use `text` for output)"
            elif rest:
                marker = SKIP_MARKER.match(rest)
                if marker:
                    skip = marker["reason"]
                else:
                    problem = f"unknown info string {rest!r}: the only marker is {{skip: <reason>}}"
            blocks.append(Block(page.name, line, language.lower(), skip, problem, token.content))
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in code_blocks(page)]


def console_commands(body: str) -> str:
    """The ``$ `` lines of a console block (with their ``\\`` continuations); the rest is output."""
    commands, continuing = [], False
    for line in body.splitlines():
        if continuing or line.startswith("$ "):
            commands.append(line if continuing else line[2:])
            continuing = line.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


# --- what the pages say -------------------------------------------------------------------


def test_the_readme_fits_on_a_screen_and_links_every_docs_page():
    assert len(README.read_bytes()) <= README_MAX_BYTES
    readme = _page(README)
    linked = {_resolve(readme, target)[0] for _, target in _links(readme) if _is_relative(target)}
    unlinked = sorted(path.name for path in DOCS.glob("*.md") if path.resolve() not in linked)
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def broken_links(page: Page, root: Path = REPO) -> list[str]:
    """Relative links of the page whose file, or whose heading in a Markdown file, does not exist."""
    broken = []
    for line, target in _links(page):
        if not _is_relative(target):
            continue
        path, anchor = _resolve(page, target)
        where = f"{page.path.relative_to(root).as_posix()}:{line}: {target}"
        if root not in path.parents and path != root:
            broken.append(f"{where}: points outside the repository")
        elif not path.exists():
            broken.append(f"{where}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in heading_ids(_page(path)):
            broken.append(f"{where}: no heading #{anchor} in {path.relative_to(root).as_posix()}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Page):
    broken = broken_links(page)
    assert not broken, "\n".join(broken)


def test_the_link_check_finds_missing_files_headings_and_escapes(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    page_path = tmp_path / "docs" / "page.md"
    page_path.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#a-code-heading) [ok](#page) [ok](https://example.com/x#y)\n"
        "[gone](missing.md) [no heading](other.md#nothing) [here](#nowhere) [out](../../etc/passwd)\n"
    )
    broken = broken_links(_page(page_path), root=tmp_path)
    assert [entry.split(": ")[1] for entry in broken] == ["missing.md", "other.md#nothing", "#nowhere", "../../etc/passwd"]


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_code_block_is_labelled_and_every_command_block_runnable_or_marked(page: Page):
    problems = [f"{block.where}: {block.problem}" for block in code_blocks(page) if block.problem]
    assert not problems, "\n".join(problems)


def test_the_readme_test_command_is_what_ci_runs():
    """.ci/run may only add quiet flags to the README's two test commands."""
    tests_block = next(
        block for block in code_blocks(_page(README)) if "scripts/test.sh" in block.body and block.language in SHELL_LANGUAGES
    )
    readme_commands = [shlex.split(line) for line in tests_block.body.splitlines() if line.strip()]
    ci_commands = [
        shlex.split(line)
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert len(readme_commands) == len(ci_commands), (readme_commands, ci_commands)
    for readme_words, ci_words in zip(readme_commands, ci_commands):
        remaining = iter(ci_words)
        assert all(word in remaining for word in readme_words), (readme_words, ci_words)  # in order


# --- running the commands ---------------------------------------------------------------------


@dataclass
class Outcome:
    returncode: int
    output: str
    seconds: float


class DocsRun:
    """Runs the runnable blocks in reading order, each once, in one scratch copy of the repository.

    Blocks run lazily up to the one a test asks for, so a selection (``-k``) runs only what comes
    before it, and every block sees what the earlier ones wrote.
    """

    def __init__(self, workdir: Path, scratch: Path, blocks: list[Block]):
        self.workdir = workdir
        self.scratch = scratch
        self.blocks = [block for block in blocks if block.runnable]
        self.outcomes: dict[str, Outcome] = {}
        self.environment = self._environment()

    def _environment(self) -> dict[str, str]:
        bin_dir = self.scratch / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("python", "python3"):  # the interpreter running the tests, whatever PATH says
            wrapper = bin_dir / name
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
            wrapper.chmod(0o755)
        environment = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED_PREFIXES)}
        environment.update(
            PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), environment.get("PATH", "")]),
            # the code under test: the copy, ahead of whatever checkout the editable install points at
            PYTHONPATH=os.pathsep.join(filter(None, [str(self.workdir), environment.get("PYTHONPATH", "")])),
            HF_HOME=str(self.scratch / "huggingface"),
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        return environment

    def outcome(self, block: Block) -> Outcome:
        for earlier in self.blocks[: self.blocks.index(block) + 1]:
            if earlier.where not in self.outcomes:
                self.outcomes[earlier.where] = self._run(earlier)
        return self.outcomes[block.where]

    def _run(self, block: Block) -> Outcome:
        number = len(self.outcomes)
        if block.language in PYTHON_LANGUAGES:
            script = self.scratch / f"block-{number}.py"
            script.write_text(block.body)
            command = [sys.executable, str(script)]
        else:
            body = console_commands(block.body) if block.language == "console" else block.body
            script = self.scratch / f"block-{number}.sh"
            script.write_text("set -eo pipefail\n" + body)
            command = ["bash", str(script)]
        log = self.scratch / f"block-{number}.log"
        started = time.monotonic()
        # Output goes to a file, not a pipe: a server started with `&` must not hold the test up.
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, cwd=self.workdir, env=self.environment, stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                # SIGTERM as a shell's is: the test process may have inherited it ignored.
                preexec_fn=_default_sigterm,
            )
            try:
                returncode = process.wait(timeout=BLOCK_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                returncode = -1
            finally:
                # whatever the block left running (`&`), and the block itself on a timeout
                _end_group(process.pid)
                process.wait()
        output = log.read_text(errors="replace")
        if returncode == -1:
            output += f"\n[timed out after {BLOCK_TIMEOUT_SECONDS} s]"
        return Outcome(returncode, output, time.monotonic() - started)


def test_the_block_parser_reads_the_convention():
    page = _page_from_text(
        "```bash {skip: needs a Kubernetes cluster}\nkubectl get pods\n```\n\n"
        "```bash\necho hi\n```\n\n"
        "```\nno language\n```\n\n"
        "Text.\n\n    indented command\n\n"
        "```bash {run: now}\necho x\n```\n\n"
        "```bash {skip:   }\necho y\n```\n\n"
        "```text\noutput\n```\n"
    )
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.skip, b.runnable) for b in blocks] == [
        (1, "bash", "needs a Kubernetes cluster", False),
        (5, "bash", None, True),
        (9, "", None, False),
        (15, "", None, False),
        (17, "bash", None, False),
        (21, "bash", None, False),
        (25, "text", None, False),
    ]
    assert [bool(b.problem) for b in blocks] == [False, False, True, True, True, True, False]


def test_console_blocks_run_their_prompt_lines_only():
    assert console_commands("$ echo a \\\n  b\nan output line\n$ echo c\n") == "echo a \\\n  b\necho c\n"


def test_github_heading_ids():
    page = _page_from_text("# The Iceberg table (`iceberg_table`)\n\n## GDPR erasure: the `gdpr_erasure` job\n\n## In Dagster's UI\n\n## In Dagster's UI\n")
    assert heading_ids(page) == {
        "the-iceberg-table-iceberg_table", "gdpr-erasure-the-gdpr_erasure-job", "in-dagsters-ui", "in-dagsters-ui-1",
    }


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _end_group(group: int, grace_seconds: float = 5.0) -> None:
    """SIGTERM the block's process group; SIGKILL what still runs after ``grace_seconds``."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _group_running(group):
            return
        time.sleep(0.1)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_running(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: gone, or a zombie nobody reaped yet (its orphaned parent
    is whatever init the machine has, which need not reap), means ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_block_keeps_its_exports_and_its_background_processes_end_with_it(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    pid_file = workdir / "sleeper.pid"
    block = Block("docs/example.md", 1, "bash", None, None, f"sleep 300 &\necho $! > {pid_file}\nexport GREETING=hello\ntest \"$GREETING\" = hello\n")
    later = Block("docs/example.md", 9, "bash", None, None, 'test -z "${GREETING:-}"\n')
    failing = Block("docs/example.md", 12, "bash", None, None, "false\necho not reached\n")
    run = DocsRun(workdir, tmp_path / "scratch", [block, later, failing])
    assert run.outcome(block).returncode == 0
    sleeper = int(pid_file.read_text())
    for _ in range(50):  # SIGTERM was sent when the block ended; give the process a moment to go
        if not _running(sleeper):
            break
        time.sleep(0.1)
    assert not _running(sleeper)
    assert run.outcome(later).returncode == 0  # an export does not leak into the next block
    outcome = run.outcome(failing)
    assert outcome.returncode != 0 and "not reached" not in outcome.output


@pytest.fixture(scope="module")
def docs_run(tmp_path_factory) -> DocsRun:
    scratch = tmp_path_factory.mktemp("docs-scratch")
    workdir = tmp_path_factory.mktemp("docs-checkout") / "repository"
    shutil.copytree(REPO, workdir, ignore=COPY_IGNORED, symlinks=True)
    return DocsRun(workdir, scratch, all_blocks())


def _command_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.language in SHELL_LANGUAGES | PYTHON_LANGUAGES and not block.problem]


@pytest.mark.slow
@pytest.mark.timeout(3 * BLOCK_TIMEOUT_SECONDS)
@pytest.mark.parametrize("block", _command_blocks(), ids=lambda block: block.where)
def test_the_command_block_runs(block: Block, docs_run: DocsRun):
    if block.skip:
        pytest.skip(f"{block.where}: {block.skip}")
    outcome = docs_run.outcome(block)
    assert outcome.returncode == 0, (
        f"{block.where} exited {outcome.returncode} after {outcome.seconds:.0f} s\n"
        f"--- block ---\n{block.body}--- output (last 4,000 characters) ---\n{outcome.output[-4000:]}"
    )
