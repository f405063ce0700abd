"""Which files under a source are traces, and of which kind: plain JSONL, or a Langfuse blob-storage export.

A source is a local folder, a single file, or ``s3://bucket/prefix``; files
and folders whose name starts with ``.`` or ``_`` are left out. A Langfuse
blob-storage export is
``{prefix}{projectId}/{traces|observations|observations_v2|scores}/{windowEnd}.{jsonl|json|parquet|csv}``
(``.gz`` too). A folder is read as an export folder when it
is named ``observations_v2``, when its parent also holds another of the four
folder names, or when its file names start with an ISO date
(``2026-04-18T06:00:00Z.jsonl``). A lone ``traces/``, ``observations/`` or
``scores/`` folder of hand-made files is read as plain JSONL instead
(``*.jsonl``, ``*.ndjson``, also ``.gz``).

A missing folder, file or bucket raises :class:`~..base.SourceUnavailableError`;
an existing empty folder is a source without data.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from ...storage import Location
from ..base import SourceUnavailableError

EXPORT_FOLDERS = ("traces", "observations", "observations_v2", "scores")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
EXPORT_SUFFIXES = JSONL_SUFFIXES + (".json", ".json.gz", ".parquet", ".csv", ".csv.gz")
_WINDOW_END_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T")


@dataclass(frozen=True)
class SourceFile:
    path: str  # on the filesystem (``bucket/key`` or ``/abs/path``)
    uri: str  # as shown in locations (``s3://bucket/key`` or ``/abs/path``)
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def cache_key(self) -> tuple | None:
        return None if self.mtime_ns is None else (self.path, self.size, self.mtime_ns)


@dataclass
class ExportRoot:
    """One project's export folder: ``<root>/{traces,observations,observations_v2,scores}/``."""

    uri: str
    traces: list[SourceFile] = field(default_factory=list)
    observations: list[SourceFile] = field(default_factory=list)
    scores: list[SourceFile] = field(default_factory=list)


def list_trace_files(location: Location) -> tuple[list[SourceFile], list[ExportRoot]]:
    """Plain JSONL files and export roots under ``location``, each sorted by path."""
    filesystem = location.filesystem
    try:
        info = filesystem.get_file_info(location.path)
        if info.type == pafs.FileType.NotFound:
            raise SourceUnavailableError(f"trace files not found: {location.uri} does not exist")
        if info.type == pafs.FileType.File:
            return _classify(location, [(posixpath.basename(info.path), _source_file(location, info))])
        selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
        infos = filesystem.get_file_info(selector)
    except OSError as exc:
        raise SourceUnavailableError(f"cannot list trace files at {location.uri}: {exc}") from exc
    listed = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = posixpath.relpath(info.path, location.path)
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        listed.append((relative, _source_file(location, info)))
    return _classify(location, sorted(listed, key=lambda item: item[0]))

def _source_file(location: Location, info: pafs.FileInfo) -> SourceFile:
    uri = f"s3://{info.path}" if location.is_s3 else info.path
    return SourceFile(info.path, uri, info.size, info.mtime_ns)

def _classify(location: Location, listed: list[tuple[str, SourceFile]]) -> tuple[list[SourceFile], list[ExportRoot]]:
    def export_folder(relative: str) -> tuple[str, str] | None:
        folders = relative.split("/")[:-1]
        for index in range(len(folders) - 1, -1, -1):
            if folders[index] in EXPORT_FOLDERS:
                return "/".join(folders[:index]), folders[index]
        return None

    kinds_by_root: dict[str, set[str]] = {}
    for relative, _ in listed:
        found = export_folder(relative)
        if found:
            kinds_by_root.setdefault(found[0], set()).add(found[1])

    plain: list[SourceFile] = []
    roots: dict[str, ExportRoot] = {}
    for relative, file in listed:
        name = posixpath.basename(relative).lower()
        found = export_folder(relative)
        is_export = found is not None and (
            found[1] == "observations_v2"
            or len(kinds_by_root[found[0]]) > 1
            or _WINDOW_END_NAME.match(name) is not None
        )
        if is_export and name.endswith(EXPORT_SUFFIXES):
            root_key, kind = found
            root = roots.setdefault(root_key, ExportRoot(posixpath.join(location.uri, root_key)))
            if kind == "traces":
                root.traces.append(file)
            elif kind == "scores":
                root.scores.append(file)
            else:
                root.observations.append(file)
        elif not is_export and name.endswith(JSONL_SUFFIXES):
            plain.append(file)
    return plain, [roots[key] for key in sorted(roots)]
