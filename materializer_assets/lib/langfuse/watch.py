"""What a sensor tick should request, decided from fingerprints and a cursor (no Dagster here).

The cursor is the sensor's watermark and memory, kept by Dagster between
ticks: the last complete UTC day it covered, and for each (day, model) cell
of the lookback window the fingerprint it last requested a run for. A tick

1. scans the complete days from ``lookback_days`` before yesterday — or from
   the day after the watermark, if the sensor was off longer than that — up
   to yesterday (today is never complete, and its date partition does not
   exist yet);
2. requests a run for every cell whose fingerprint changed (new traces, late
   traces, new feedback) and for every cell that vanished (all its traces
   deleted: the run empties it);
3. remembers the fingerprints of the lookback window only, so the cursor
   stays small.

Run keys carry the fingerprint, so Dagster itself drops a request it has
already seen, even if a cursor update was lost: ticks are idempotent across
restarts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta

CURSOR_VERSION = 1
VANISHED = "empty"


@dataclass
class WatchCursor:
    watermark: date | None = None  # the last complete day a tick covered
    cells: dict[str, str] = field(default_factory=dict)  # "YYYY-MM-DD|slug" -> fingerprint token

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "watermark": self.watermark.isoformat() if self.watermark else None,
                "cells": self.cells,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | None) -> "WatchCursor":
        """The cursor; an absent or unreadable one starts afresh (a full lookback scan)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            watermark = date.fromisoformat(raw["watermark"]) if raw.get("watermark") else None
            cells = {str(key): str(value) for key, value in (raw.get("cells") or {}).items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()
        return cls(watermark, cells)


@dataclass(frozen=True)
class CellRequest:
    day: str
    slug: str
    token: str

    @property
    def key(self) -> str:
        return f"{self.day}|{self.slug}"


@dataclass
class TickPlan:
    first_day: date
    last_day: date
    requests: list[CellRequest]
    cursor: WatchCursor


def days_to_scan(
    cursor: WatchCursor, today: date, lookback_days: int, first_partition_day: date
) -> tuple[date, date] | None:
    """The complete days a tick looks at, or None when no day is complete yet."""
    last = today - timedelta(days=1)
    if last < first_partition_day:
        return None
    first = last - timedelta(days=max(lookback_days, 1) - 1)
    if cursor.watermark is not None and cursor.watermark < first:
        first = cursor.watermark + timedelta(days=1)  # catch up the days missed while the sensor was off
    return max(first, first_partition_day), last


def plan_tick(
    cursor: WatchCursor,
    fingerprints: dict[tuple[str, str], str],
    first_day: date,
    last_day: date,
    lookback_days: int,
) -> TickPlan:
    """Cells to request (changed or vanished since the cursor) and the next cursor."""
    first_key, last_key = first_day.isoformat(), last_day.isoformat()
    current = {f"{day}|{slug}": token for (day, slug), token in fingerprints.items() if first_key <= day <= last_key}
    previous = {key: token for key, token in cursor.cells.items() if first_key <= key.split("|", 1)[0] <= last_key}
    requests = [
        CellRequest(*key.split("|", 1), token) for key, token in sorted(current.items()) if previous.get(key) != token
    ]
    requests += [
        CellRequest(*key.split("|", 1), VANISHED)
        for key in sorted(previous)
        if key not in current and previous[key] != VANISHED
    ]
    keep_from = (last_day - timedelta(days=max(lookback_days, 1) - 1)).isoformat()
    remembered = {key: token for key, token in cursor.cells.items() if key.split("|", 1)[0] >= keep_from}
    remembered.update(current)
    for request in requests:
        remembered[request.key] = request.token
    remembered = {key: token for key, token in remembered.items() if key.split("|", 1)[0] >= keep_from}
    return TickPlan(first_day, last_day, requests, WatchCursor(last_day, dict(sorted(remembered.items()))))
