"""The append-only journal of one (segment, destination) sync, kept in the warehouse.

The sync never holds the warehouse open while it calls a destination, so what it is about to
send and what a destination answers are written to ``activation.sync_journal`` in short
transactions of their own, and folded into ``sync_state`` later (:mod:`orchestrator.sync.state`):
at the end of the run, or first thing in the next run after a crash, on any machine. The
journal lives with the state it describes, so a lost machine (its disk, its folder) costs time,
never correctness.

Table ``activation.sync_journal``, one row per line: ``segment``, ``destination`` (the pair),
``run`` (run id, ordered by start time: ``<ns since epoch, 20 digits>-<8 hex>``), ``seq``
(batch number within the run), ``kind`` (``intent`` | ``ack`` | ``reject``), ``line`` (the
line's JSON text, below) and ``written_at`` (UTC). One line per batch and kind (an ``intent``
line before the call, then at most one ``ack`` and one ``reject`` line).

The JSON ``line`` holds: ``run``, ``seq`` and ``kind`` as above; ``op``: ``add`` | ``update`` |
``remove``. ``remove_reason`` str | null (a :class:`destinations.base.RemoveReason` value).
``at`` str (ISO 8601, UTC, no offset). Per row, arrays of the same length (one element per row
of the line): ``subject_keys`` (sha256 hex), ``fields_hashs`` (the row's hash; for removes the
hash held in state), ``destination_refs`` (str | null: platform member id, or the Google key
sent to an ad platform), ``reasons`` (str | null: platform's words for a reject, emails masked),
``permanents`` (bool, or null on a reject: the answer did not confirm the row, outcome
unknown) and ``statuses`` (str | null: the member's status as the platform reported it); a
missing ``reasons``/``permanents``/``statuses`` array means null/false/null for every row
(intent lines leave them out).

Compact ``ack`` (the common case: the destination accepted every row of the batch):
``"whole_batch": true`` and no per-row arrays, except ``destination_refs`` when the platform
named a member differently from the intent (e.g. Mailchimp's member id), in the order of the
intent's rows. Its rows are those of the ``intent`` line of the same ``run`` and ``seq``
(written before the call, so always present); with no such intent line it applies to nothing.

Journals that earlier versions kept as local files (``<state_dir>/journal/<segment>__<
destination>.jsonl``, one line per row in the first versions, with the fields in the singular)
are imported into the table by :func:`import_file_journal` and fold the same way.

No raw email is ever written here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from orchestrator.config import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)

_INSERT_SQL = """
    INSERT INTO activation.sync_journal (segment, destination, run, seq, kind, line, written_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""


@dataclass(frozen=True)
class JournalLine:
    """One encoded journal line: ``run`` id, batch ``seq``, ``kind`` (``intent`` | ``ack`` |
    ``reject``) and ``text``, its compact JSON (which repeats run, seq and kind)."""

    run: str
    seq: int
    kind: str
    text: str


def new_run_id() -> str:
    """A run id that sorts by start time: ``<time_ns, 20 digits>-<8 random hex>``."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def check_pair(segment: str, destination: str) -> None:
    """Raise ``ValueError`` unless both names match ``NAME_PATTERN`` (they key the journal,
    the pair lock and the scratch folder)."""
    for name in (segment, destination):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} must match {NAME_PATTERN}")


def line_encoder() -> Callable[[object], str]:
    """A compact JSON encoder (``separators=(",", ":")``) for journal values: build one and
    reuse it (``json.dumps`` with ``separators`` builds a new encoder per call)."""
    return json.JSONEncoder(separators=(",", ":")).encode


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def append_lines(
    con: duckdb.DuckDBPyConnection, segment: str, destination: str, lines: Sequence[JournalLine]
) -> None:
    """Insert ``lines`` into ``activation.sync_journal`` on ``con`` (in the caller's
    transaction, if one is open: durable once it commits).

    Raises:
        ValueError: a bad pair name.
    """
    check_pair(segment, destination)
    if not lines:
        return
    now = _utc_now()
    con.executemany(
        _INSERT_SQL,
        [[segment, destination, ln.run, ln.seq, ln.kind, ln.text, now] for ln in lines],
    )


def append(
    con: duckdb.DuckDBPyConnection,
    segment: str,
    destination: str,
    lines: Iterable[Mapping[str, object]],
) -> None:
    """Encode ``lines`` (dicts with at least ``run``, ``seq`` and ``kind``) and append them
    (see :func:`append_lines`)."""
    encode = line_encoder()
    append_lines(
        con,
        segment,
        destination,
        [JournalLine(str(d["run"]), int(d["seq"]), str(d["kind"]), encode(d)) for d in lines],
    )


def withdraw_unsent(
    con: duckdb.DuckDBPyConnection, segment: str, destination: str, run: str, first_seq: int
) -> None:
    """Delete the ``intent`` lines of batches ``first_seq`` and later of ``run``: journaled
    ahead of their call, never sent (the run stopped on an error first). Call it in the
    transaction that folds the journal."""
    con.execute(
        "DELETE FROM activation.sync_journal WHERE segment = ? AND destination = ? "
        "AND run = ? AND seq >= ? AND kind = 'intent'",
        [segment, destination, run, first_seq],
    )


def line_count(con: duckdb.DuckDBPyConnection, segment: str, destination: str) -> int:
    """How many journal lines the pair holds (not yet folded)."""
    (count,) = con.execute(
        "SELECT count(*) FROM activation.sync_journal WHERE segment = ? AND destination = ?",
        [segment, destination],
    ).fetchone()
    return int(count)


def file_journal_path(state_dir: Path, segment: str, destination: str) -> Path:
    """Where earlier versions kept the pair's journal: ``<state_dir>/journal/<segment>__<
    destination>.jsonl``.

    Raises:
        ValueError: a bad pair name.
    """
    check_pair(segment, destination)
    return Path(state_dir) / "journal" / f"{segment}__{destination}.jsonl"


def _file_lines(path: Path) -> list[JournalLine]:
    """The complete lines of a file journal (a torn last line, with no newline, is left out:
    its call never got an answer journaled, or never happened)."""
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    lines = []
    for raw in complete.splitlines():
        if not raw.strip():
            continue
        head = json.loads(raw)
        lines.append(JournalLine(str(head["run"]), int(head["seq"]), str(head["kind"]), raw))
    return lines


def import_file_journal(
    con: duckdb.DuckDBPyConnection, state_dir: Path, segment: str, destination: str
) -> int:
    """Move a journal an earlier version left as a local file into the table (one transaction),
    then delete the file; returns the lines imported (0 when there is no file).

    A crash between the commit and the deletion imports the lines again next time: folding
    duplicate lines gives the same tables.

    Raises:
        json.JSONDecodeError: a complete line of the file is not JSON (the file is kept).
    """
    path = file_journal_path(state_dir, segment, destination)
    if not path.is_file():
        return 0
    lines = _file_lines(path)
    con.begin()
    try:
        append_lines(con, segment, destination, lines)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    path.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


__all__ = [
    "JournalLine",
    "append",
    "append_lines",
    "check_pair",
    "file_journal_path",
    "import_file_journal",
    "line_count",
    "line_encoder",
    "new_run_id",
    "withdraw_unsent",
]
