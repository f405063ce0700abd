"""Which cells new blob-export files touch, from a file listing (no Dagster here).

Langfuse's blob-storage export writes
``{prefix}{projectId}/{traces|observations|observations_v2|scores}/{windowEnd}.{ext}``
on a schedule (DESIGN §4); people also drop plain JSONL next to it. The file
sensor lists the source (a local folder or ``s3://bucket/prefix``), and keeps
a watermark: the newest modification time it has seen, plus the files that
carry exactly that time (two files can share a second on S3). Files newer
than the watermark are new or rewritten.

For a new **export** file the days are those of its window — from the
previous file's window end in the same folder to its own (a day when it is
the first) — and every model of those days is affected, since traces and
scores reach generations through joins. For a new **plain JSONL** file the
cells are exactly those its own records fall in. Only complete days inside
the lookback window are considered; older data is a backfill.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable

import pyarrow.fs as pafs

from ..sources.files.listing import EXPORT_FOLDERS, EXPORT_SUFFIXES
from ..storage import Location

_WINDOW_END = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2})[:\-_]?(\d{2})[:\-_]?(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class ListedFile:
    relative: str
    uri: str
    size: int
    mtime_ns: int

    @property
    def is_export(self) -> bool:
        return any(part in EXPORT_FOLDERS for part in self.relative.split("/")[:-1])

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.relative)


def list_source_files(location: Location) -> list[ListedFile]:
    """Readable trace files under ``location`` (or the file itself), skipping hidden and ``_`` names."""
    filesystem = location.filesystem
    info = filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{location.uri} does not exist")
    if info.type == pafs.FileType.File:
        infos, base = [info], posixpath.dirname(location.path)
    else:
        infos, base = filesystem.get_file_info(pafs.FileSelector(location.path, recursive=True)), location.path
    files = []
    for item in infos:
        if item.type != pafs.FileType.File or not item.path.lower().endswith(EXPORT_SUFFIXES):
            continue
        relative = posixpath.relpath(item.path, base)
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        uri = f"s3://{item.path}" if location.is_s3 else item.path
        files.append(ListedFile(relative, uri, item.size or 0, item.mtime_ns or 0))
    return sorted(files, key=lambda f: f.relative)


@dataclass
class FileCursor:
    watermark_ns: int = 0
    at_watermark: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps(
            {"v": 1, "mtime_ns": self.watermark_ns, "at": sorted(self.at_watermark)}, separators=(",", ":")
        )

    @classmethod
    def loads(cls, text: str | None) -> "FileCursor":
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls(int(raw.get("mtime_ns") or 0), [str(item) for item in raw.get("at") or []])
        except (ValueError, TypeError, AttributeError):
            return cls()


def changed_files(files: Iterable[ListedFile], cursor: FileCursor) -> list[ListedFile]:
    seen_at_watermark = set(cursor.at_watermark)
    return [
        f
        for f in files
        if f.mtime_ns > cursor.watermark_ns
        or (f.mtime_ns == cursor.watermark_ns and f.relative not in seen_at_watermark)
    ]


def advance(cursor: FileCursor, files: Iterable[ListedFile]) -> FileCursor:
    files = list(files)
    newest = max([cursor.watermark_ns] + [f.mtime_ns for f in files])
    at = {f.relative for f in files if f.mtime_ns == newest}
    if newest == cursor.watermark_ns:
        at |= set(cursor.at_watermark)
    return FileCursor(newest, sorted(at))


def window_end(name: str) -> datetime | None:
    """The window end in an export file name (``2026-04-19T06:00:00.000Z.jsonl``), in UTC."""
    match = _WINDOW_END.match(posixpath.basename(name))
    if not match:
        return None
    day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{hour}:{minute}:{second}")
    except ValueError:
        return None
    if fraction:
        moment = moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment = moment - sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment.replace(tzinfo=timezone.utc)


def export_window_days(changed: ListedFile, all_files: Iterable[ListedFile]) -> set[date] | None:
    """UTC days of the window a dated export file covers; None when its name carries no date."""
    end = window_end(changed.relative)
    if end is None:
        return None
    earlier = [
        moment
        for moment in (
            window_end(f.relative) for f in all_files if f.folder == changed.folder and f.relative != changed.relative
        )
        if moment is not None and moment < end
    ]
    start = max(earlier) if earlier else end - timedelta(days=1)
    days = set()
    day = start.date()
    last = (end - timedelta(microseconds=1)).date()
    while day <= last:
        days.add(day)
        day += timedelta(days=1)
    return days


def cells_for_changes(
    changed: Iterable[ListedFile],
    all_files: list[ListedFile],
    days: list[date],
    models_in_source: Callable[[date], Iterable[str | None]],
    models_in_file: Callable[[ListedFile, date], Iterable[str | None]],
    slug: Callable[[str | None], str],
) -> set[tuple[str, str]]:
    """(day, slug) cells the changed files touch, among ``days``."""
    allowed = set(days)
    cells: set[tuple[str, str]] = set()
    export_days: set[date] = set()
    for file in changed:
        if file.is_export:
            window = export_window_days(file, all_files)
            export_days |= allowed if window is None else (window & allowed)
        else:
            for day in days:
                cells.update((day.isoformat(), slug(name)) for name in models_in_file(file, day))
    for day in sorted(export_days):
        cells.update((day.isoformat(), slug(name)) for name in models_in_source(day))
    return cells
