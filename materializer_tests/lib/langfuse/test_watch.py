"""Cell fingerprints over HTTP, and the sensor's tick planning (pure)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from materializer_assets.lib.langfuse.extract import CellFingerprint
from materializer_assets.lib.langfuse.watch import VANISHED, WatchCursor, days_to_scan, plan_tick
from materializer_assets.lib.slugs import model_slug
from materializer_tests.langfuse_server import expected_cells
from materializer_tests.langfuse_server.data import DAY, GLM, GPT, PREVIOUS_DAY, FxScore, at

from .helpers import V3, V4, reader_for

NOW = datetime(2026, 4, 20, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("version", [V4, V3], ids=["v4", "v3"])
def test_fingerprints_change_only_where_data_changed(make_langfuse_server, version):
    server = make_langfuse_server(version)
    reader = reader_for(server)
    first = reader.scan_cells(PREVIOUS_DAY, DAY, scores_until=NOW)
    assert set(first) == expected_cells(server.data, PREVIOUS_DAY) | expected_cells(server.data, DAY)
    glm = (DAY.isoformat(), model_slug(GLM))
    assert first[glm].generations == 14 and first[glm].model_names == {GLM}
    assert reader.scan_cells(PREVIOUS_DAY, DAY, scores_until=NOW) == first  # nothing new, same fingerprints

    server.release_late()  # one late glm trace, with feedback
    second = reader.scan_cells(PREVIOUS_DAY, DAY, scores_until=NOW)
    assert {cell for cell in first if first[cell].token != second[cell].token} == {glm}
    assert second[glm].generations == 15

    # New user feedback on a gpt trace of the previous day changes that cell only.
    gpt_previous = (PREVIOUS_DAY.isoformat(), model_slug(GPT))
    server.data.add(FxScore("late-feedback", "tr-0417-000", "user_feedback", 1.0, timestamp=at(DAY, 20)))
    third = reader.scan_cells(PREVIOUS_DAY, DAY, scores_until=NOW)
    assert {cell for cell in second if second[cell].token != third[cell].token} == {gpt_previous}
    # A score outside the feedback rules changes nothing.
    server.data.add(FxScore("judge", "tr-0417-000", "user_feedback", 0.3, source="EVAL", timestamp=at(DAY, 21)))
    assert reader.scan_cells(PREVIOUS_DAY, DAY, scores_until=NOW) == third


def test_fingerprint_does_not_depend_on_order():
    a, b = CellFingerprint("d", "s"), CellFingerprint("d", "s")
    a.add_generation("g1", "v1"), a.add_generation("g2", "v1"), a.add_score("s1", 1.0)
    b.add_score("s1", 1.0), b.add_generation("g2", "v1"), b.add_generation("g1", "v1")
    assert a.token == b.token
    b.add_generation("g3", "v1")
    assert a.token != b.token


def test_days_to_scan():
    empty = WatchCursor()
    start = date(2026, 1, 1)
    assert days_to_scan(empty, date(2026, 4, 20), 3, start) == (date(2026, 4, 17), date(2026, 4, 19))
    # Off for a week: catch up from the day after the watermark.
    assert days_to_scan(WatchCursor(date(2026, 4, 10)), date(2026, 4, 20), 3, start) == (
        date(2026, 4, 11),
        date(2026, 4, 19),
    )
    # Never before the first date partition, and nothing when no day is complete.
    assert days_to_scan(empty, date(2026, 1, 2), 3, start) == (date(2026, 1, 1), date(2026, 1, 1))
    assert days_to_scan(empty, date(2026, 1, 1), 3, start) is None


def test_plan_requests_new_changed_and_vanished_cells_and_forgets_old_days():
    first, last = date(2026, 4, 17), date(2026, 4, 19)
    tick1 = plan_tick(WatchCursor(), {("2026-04-18", "glm"): "t1", ("2026-04-19", "gpt"): "t2"}, first, last, 3)
    assert [(r.day, r.slug, r.token) for r in tick1.requests] == [
        ("2026-04-18", "glm", "t1"),
        ("2026-04-19", "gpt", "t2"),
    ]
    assert tick1.cursor.watermark == last

    cursor = WatchCursor.loads(tick1.cursor.dumps())  # through Dagster's storage
    tick2 = plan_tick(cursor, {("2026-04-18", "glm"): "t1", ("2026-04-19", "gpt"): "t2"}, first, last, 3)
    assert tick2.requests == []  # nothing new, nothing requested

    tick3 = plan_tick(tick2.cursor, {("2026-04-18", "glm"): "t1b"}, first, last, 3)
    assert [(r.day, r.slug, r.token) for r in tick3.requests] == [
        ("2026-04-18", "glm", "t1b"),
        ("2026-04-19", "gpt", VANISHED),
    ]
    tick4 = plan_tick(tick3.cursor, {("2026-04-18", "glm"): "t1b"}, first, last, 3)
    assert tick4.requests == []  # a vanished cell is emptied once

    # A day later the window moves: 2026-04-17 is forgotten.
    later = plan_tick(
        WatchCursor(last, {"2026-04-17|old": "x", "2026-04-18|glm": "t1b"}),
        {("2026-04-18", "glm"): "t1b"},
        date(2026, 4, 18),
        date(2026, 4, 20),
        3,
    )
    assert later.requests == [] and set(later.cursor.cells) == {"2026-04-18|glm"}


def test_an_unreadable_cursor_starts_afresh():
    assert WatchCursor.loads("not json") == WatchCursor()
    assert WatchCursor.loads('{"watermark": "yesterday"}') == WatchCursor()
    assert WatchCursor.loads(None) == WatchCursor()
