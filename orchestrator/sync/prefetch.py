"""Produce the items of an iterable in a background thread, a bounded number ahead.

The sync uses it to read and build batch ``n + 1`` (Parquet decoding, ``Row`` objects, journal
text) while batch ``n``'s HTTP call is in flight: the destination works in another process, so
that time would otherwise be idle. The consumer sees the items in the producer's order; the
producer never does more than build items (it writes no journal and calls no destination).

    with prefetched(make_batches(), depth=1) as batches:
        for batch in batches:
            ...

Leaving the ``with`` block (normally, or by an exception such as a failed call) stops the
producer and joins its thread, so no thread outlives the block (it is also a daemon thread).
An exception raised by the producer is re-raised to the consumer where the next item would be.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

#: How often (s) a producer blocked on a full queue checks whether it was told to stop.
_POLL_S = 0.05


class _Done:
    """Sentinel: the producer finished."""


class _Failed:
    """The producer raised ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless told to stop first; True when it was put."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
        except queue.Full:
            continue
        return True
    return False


def _produce(items: Iterator[T], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _put(out, item, stop):
                return
        _put(out, _Done(), stop)
    except BaseException as error:  # handed to the consumer, re-raised there
        _put(out, _Failed(error), stop)
    finally:
        close = getattr(items, "close", None)
        if close is not None:  # a generator's own cleanup runs in its thread
            close()


def _consume(out: queue.Queue) -> Iterator[T]:
    while True:
        item = out.get()
        if isinstance(item, _Done):
            return
        if isinstance(item, _Failed):
            raise item.error
        yield item


@contextmanager
def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[Iterator[T]]:
    """Yield an iterator over ``items``, which a daemon thread produces at most ``depth``
    items ahead of the consumer (plus the one it is building).

    Args:
        items: any iterable; it is iterated in the background thread only.
        depth: items kept ready (>= 1); each is held in memory until consumed.

    Raises:
        ValueError: ``depth`` below 1.
        BaseException: whatever iterating ``items`` raised, when the consumer reaches it.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(
        target=_produce, args=(iter(items), out, stop), name="sync-prefetch", daemon=True
    )
    worker.start()
    try:
        yield _consume(out)
    finally:
        stop.set()
        worker.join()


__all__ = ["prefetched"]
