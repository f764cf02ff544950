"""The local, append-only journal of one (segment, destination) sync: crash safety.

The sync never holds the warehouse open while it calls a destination, so what a destination
answers is first written here, one JSON object per line, appended, flushed and ``fsync``-ed per
batch, and folded into ``sync_state`` later (:mod:`orchestrator.sync.state`): at the end of the
run, or first thing in the next run after a crash.

File: ``<state_dir>/journal/<segment>__<destination>.jsonl``. One line per batch and kind (an
``intent`` line before the call, then at most one ``ack`` and one ``reject`` line), fields:

``run`` str: run id, ordered by start time (``<ns since epoch, 20 digits>-<8 hex>``).
``seq`` int: batch number within the run. ``kind``: ``intent`` (written BEFORE the call: these
rows are about to be sent), ``ack`` (the destination accepted the rows) or ``reject`` (refused).
``op``: ``add`` | ``update`` | ``remove``. ``remove_reason`` str | null (a
:class:`destinations.base.RemoveReason` value). ``at`` str (ISO 8601, UTC, no offset).
Per row, arrays of the same length (one element per row of the line): ``subject_keys`` (sha256
hex), ``fields_hashs`` (the row's hash; for removes the hash held in state),
``destination_refs`` (str | null: platform member id, or the Google key sent to an ad
platform), ``reasons`` (str | null: platform's words for a reject, emails masked),
``permanents`` (bool, or null on a reject: the answer did not confirm the row, outcome
unknown) and ``statuses`` (str | null: the member's status as the platform reported it); a
missing ``reasons``/``permanents``/``statuses`` array means null/false/null for every row
(intent lines leave them out).

Compact ``ack`` (the common case: the destination accepted every row of the batch):
``"whole_batch": true`` and no per-row arrays, except ``destination_refs`` when the platform
named a member differently from the intent (e.g. Mailchimp's member id), in the order of the
intent's rows. Its rows are those of the ``intent`` line of the same ``run`` and ``seq``
(written and ``fsync``-ed before the call, so always present); with no such intent line it
applies to nothing. About half the bytes of a per-row ``ack``.

Older journals fold the same way: per-row ``ack`` lines (every version writes them when some
row of a batch was refused or unanswered), and journals of the first versions, which wrote one
line per row with the fields in the singular (``subject_key``...) as scalars.

No raw email is ever written here. Only the last line can be torn (a crash mid-write);
:func:`repair` cuts it off.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from orchestrator.config import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)


class SyncInProgressError(RuntimeError):
    """Another process is syncing the same (segment, destination) right now."""


def new_run_id() -> str:
    """A run id that sorts by start time: ``<time_ns, 20 digits>-<8 random hex>``."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def _pair_stem(segment: str, destination: str) -> str:
    for name in (segment, destination):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} must match {NAME_PATTERN}")
    return f"{segment}__{destination}"


def journal_path(state_dir: Path, segment: str, destination: str) -> Path:
    """``<state_dir>/journal/<segment>__<destination>.jsonl`` (names must match NAME_PATTERN).

    Raises:
        ValueError: a name that could escape the folder or clash with another pair.
    """
    return Path(state_dir) / "journal" / f"{_pair_stem(segment, destination)}.jsonl"


@contextmanager
def pair_lock(state_dir: Path, segment: str, destination: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<journal>.lock`` so one sync per pair runs at a time.

    Raises:
        SyncInProgressError: another process holds the lock (a sync of this pair is running).
    """
    path = journal_path(state_dir, segment, destination).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise SyncInProgressError(
                f"a sync of {segment} -> {destination} is already running"
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def waiting_pair_lock(
    state_dir: Path, segment: str, destination: str, wait_s: float
) -> Iterator[None]:
    """:func:`pair_lock`, waiting up to ``wait_s`` seconds (polling every half second) for a
    running sync of the pair to finish; ``wait_s`` 0 tries once.

    Raises:
        SyncInProgressError: the other sync still runs after ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(pair_lock(state_dir, segment, destination))
                break
            except SyncInProgressError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        yield


_TAIL_CHUNK = 64 * 1024


def _last_line_end(handle: BinaryIO, size: int) -> int:
    """Offset just past the last newline of the file (0 when it has none), reading backwards
    in chunks: a torn line is short, so this reads little whatever the journal's size."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def repair(path: Path) -> None:
    """Cut a torn last line (no trailing newline) left by a crash mid-write; no-op otherwise.

    Reads only the file's tail (it runs before every append, and a journal can hold millions
    of lines during a large first sync).
    """
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        handle.truncate(_last_line_end(handle, size))
        handle.flush()
        os.fsync(handle.fileno())


def has_entries(path: Path) -> bool:
    """True when the journal file exists and holds at least one complete line."""
    return path.exists() and path.stat().st_size > 0


def line_encoder() -> Callable[[object], str]:
    """A compact JSON encoder (``separators=(",", ":")``) for journal values: build one and
    reuse it (``json.dumps`` with ``separators`` builds a new encoder per call)."""
    return json.JSONEncoder(separators=(",", ":")).encode


def append(path: Path, lines: Iterable[Mapping[str, object]]) -> None:
    """Append ``lines`` (one JSON object each), flush and ``fsync`` before returning.

    Once this returns the lines survive a process kill or power loss.
    """
    encode = line_encoder()  # one encoder, not one per line
    append_encoded(path, [encode(line) for line in lines])


def append_encoded(path: Path, lines: Iterable[str]) -> None:
    """Append already-encoded lines (each one compact JSON object, no newline), flush and
    ``fsync`` before returning, like :func:`append`.

    Raises:
        ValueError: a line holds a newline (it would split into two journal lines).
    """
    parts = []
    for line in lines:
        if "\n" in line:
            raise ValueError("a journal line must not contain a newline")
        parts.append(line + "\n")
    text = "".join(parts)
    if not text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    repair(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def discard(path: Path) -> None:
    """Delete the journal once folded (and ``fsync`` the folder so the deletion is durable).

    Folding is idempotent, so a crash before the deletion only means the next run folds the
    same lines again, harmlessly.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "SyncInProgressError",
    "append",
    "append_encoded",
    "discard",
    "has_entries",
    "journal_path",
    "line_encoder",
    "new_run_id",
    "pair_lock",
    "repair",
    "waiting_pair_lock",
]
