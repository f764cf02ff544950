"""The background batch producer: same order, bounded lead, errors reach the consumer, and no
thread outlives the ``with`` block (a failed call must not leave a reader running)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from orchestrator.sync.prefetch import prefetched


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sync-prefetch"]


def test_items_arrive_in_order_and_the_producer_stays_at_most_depth_plus_one_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    seen, leads = [], []
    with prefetched(items(), depth=2) as ready:
        for item in ready:
            seen.append(item)
            leads.append(len(produced) - len(seen))
    assert seen == list(range(50))
    assert max(leads) <= 3  # 2 waiting in the queue and 1 being put
    assert not _workers()


def test_an_error_in_the_producer_reaches_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("parquet file vanished")

    seen = []
    with pytest.raises(OSError, match="vanished"), prefetched(items()) as ready:
        for item in ready:
            seen.append(item)
    assert seen == [1, 2]
    assert not _workers()


def test_leaving_early_stops_the_producer_and_runs_its_cleanup() -> None:
    cleaned = threading.Event()
    produced: list[int] = []

    def items() -> Iterator[int]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            cleaned.set()

    with pytest.raises(RuntimeError), prefetched(items(), depth=1) as ready:
        for item in ready:
            if item == 3:
                raise RuntimeError("the destination failed")
    assert cleaned.is_set() and not _workers()
    assert len(produced) <= 6  # stopped near the consumer, not run to the end


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError), prefetched([1], depth=0):
        pass
