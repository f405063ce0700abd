"""lib.threads: work spread over the pool comes back in order, errors reach the caller,
nested use does not wait on itself, and one core means no threads at all."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time

import pytest

from materializer_assets.lib import threads


def slow_square(x: int) -> int:
    time.sleep(random.Random(x).random() / 200)  # finish out of order
    return x * x


def test_map_ahead_gives_each_item_its_result_in_order(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    consumed = []
    for ahead in (None, 1, 3, 50):
        pairs = list(threads.map_ahead(slow_square, iter(range(40)), ahead=ahead))
        consumed.append(pairs)
        assert pairs == [(x, x * x) for x in range(40)]
    assert list(threads.map_in_threads(slow_square, range(40))) == [x * x for x in range(40)]
    assert list(threads.map_ahead(slow_square, [])) == []


def test_map_ahead_keeps_at_most_ahead_items_in_flight(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    read = []

    def items():
        for x in range(20):
            read.append(x)
            yield x

    for x, _ in threads.map_ahead(slow_square, items(), ahead=3):
        assert len(read) <= x + 3  # the reader is never more than `ahead` items past the consumer


def test_an_error_reaches_the_caller_at_its_item_after_the_results_before_it(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)

    def fails_on_five(x: int) -> int:
        if x == 5:
            raise ValueError("item 5")
        return slow_square(x)

    got = []
    with pytest.raises(ValueError, match="item 5"):
        for x, y in threads.map_ahead(fails_on_five, range(10)):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="item 5"):
        list(threads.map_in_threads(fails_on_five, range(10)))


def test_work_asked_for_inside_a_pool_thread_runs_there(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)

    def nested(x: int) -> list[int]:
        # every pool thread busy waiting on the pool would hang; inline it cannot
        return list(threads.map_in_threads(slow_square, range(x, x + 4)))

    results = [r for _, r in threads.map_ahead(nested, range(8))]
    assert results == [[y * y for y in range(x, x + 4)] for x in range(8)]


def test_one_core_runs_everything_in_the_callers_thread(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 1)
    caller = threading.current_thread()
    where = []

    def record(x: int) -> int:
        where.append(threading.current_thread())
        return x

    assert [r for _, r in threads.map_ahead(record, range(5))] == list(range(5))
    assert list(threads.map_in_threads(record, range(5))) == list(range(5))
    assert where == [caller] * 10


def test_worker_count_follows_the_cpu_affinity(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert threads.worker_count() == 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert threads.worker_count() == 4


def _square_in_child(queue) -> None:
    queue.put(list(threads.map_in_threads(slow_square, range(6))))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="this platform cannot fork")
def test_a_forked_child_makes_its_own_pool(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)
    assert list(threads.map_in_threads(slow_square, range(6))) == [x * x for x in range(6)]  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_square_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=30) == [x * x for x in range(6)]
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_in_order_hands_results_over_in_submission_order(monkeypatch, workers):
    monkeypatch.setattr(threads, "worker_count", lambda: workers)
    got: list[int] = []
    work = threads.InOrder(got.append, ahead=3)
    for x in range(30):
        work.submit(slow_square, x)
        assert len(got) >= x + 1 - 3  # never more than `ahead` results waiting
        assert got == [y * y for y in range(len(got))]
    work.drain()
    assert got == [x * x for x in range(30)]


def test_in_order_raises_a_failed_call_when_its_turn_comes(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)

    def fails_on_two(x: int) -> int:
        if x == 2:
            raise ValueError("call 2")
        return x

    got: list[int] = []
    work = threads.InOrder(got.append, ahead=10)
    with pytest.raises(ValueError, match="call 2"):  # from submit or drain, whichever meets it
        for x in range(5):
            work.submit(fails_on_two, x)
        work.drain()
    assert got == [0, 1]
