"""Requests a destination processes asynchronously: recorded while pending, confirmed later.

Google's Data Manager API answers an upload with a request id only; whether the members were
added is known later from ``requestStatus:retrieve``
(https://developers.google.com/data-manager/api/reference/rest/v1/requestStatus/retrieve). A
client that supports this (:class:`destinations.google.GoogleAudienceClient`) waits a little
for each request, and hands the requests still processing to the sync through
``take_submitted()``. Their rows got no result, so the sync journal keeps them ``pending`` in
``sync_state`` (never counted as synced); this module records which request holds each of
them and, first thing in the next run, asks for the status and turns the answer into ordinary
``ack`` / ``reject`` journal lines.

Tables (in the warehouse, like the sync journal: no step depends on a machine's own disk):

- ``activation.destination_request_journal``: the pair's request journal, one row per line:
  ``segment``, ``destination``, ``run`` (run id, ordered by start time), ``seq`` (batch number
  within the run), ``pos`` (the line's place among the batch's lines), ``kind`` and ``line``
  (JSON): ``{"kind": "sent", "subject_keys": [...]}`` (a batch is being sent for these
  subjects: older requests no longer decide their state), ``{"kind": "submitted",
  "request_id", "audience_id", "op", "remove_reason", "at", "subject_keys", "send_keys",
  "fields_hashs", "destination_refs", "fields": [{...}]}`` and ``{"kind": "resolved",
  "request_id"}``. Written in the same short transactions as the sync journal's windows
  (:mod:`orchestrator.sync.engine`), and applied and deleted in the transaction that folds the
  sync journal (:func:`fold_requests`).
- ``activation.destination_requests``: one row per member of each outstanding request.

Earlier versions kept the request journal in ``<state_dir>/journal/<segment>__<destination>
.requests.jsonl``; :func:`import_file_requests` moves such a file into the table.

Crash safety: a request whose id was never journaled leaves its rows pending; the next diff
sends them again (ingest and remove are idempotent). A status turned into journal lines but not
yet marked resolved is read again and gives the same lines. Nothing here acknowledges a row
that the platform's status did not confirm.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from destinations.base import Row, RowResult
from destinations.errors import DestinationError, PermanentError


class AsyncClient(Protocol):
    """What a client offers for asynchronous requests (see ``destinations.google``)."""

    def take_submitted(self) -> list[Any]: ...

    def request_status(self, request_id: str) -> Any: ...

    def settle(self, submitted: Any, status: Any) -> list[RowResult]: ...


def is_async(client: object) -> bool:
    """True when ``client`` hands over requests still processing (``take_submitted``)."""
    return all(hasattr(client, n) for n in ("take_submitted", "request_status", "settle"))


@dataclass(frozen=True)
class RequestLine:
    """One line of the request journal: ``run`` id, batch ``seq``, ``pos`` among the batch's
    lines and the line itself (a dict with ``kind``, see the module docstring)."""

    run: str
    seq: int
    pos: int
    line: Mapping[str, Any]


_JOURNAL_INSERT_SQL = """
    INSERT INTO activation.destination_request_journal
        (segment, destination, run, seq, pos, kind, line, written_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def append_lines(
    con: duckdb.DuckDBPyConnection, segment: str, destination: str, lines: Sequence[RequestLine]
) -> None:
    """Insert ``lines`` into ``activation.destination_request_journal`` on ``con`` (in the
    caller's transaction, if one is open: durable once it commits)."""
    if not lines:
        return
    now = datetime.now(UTC).replace(tzinfo=None)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    con.executemany(
        _JOURNAL_INSERT_SQL,
        [
            [segment, destination, ln.run, ln.seq, ln.pos, ln.line["kind"], encode(ln.line), now]
            for ln in lines
        ],
    )


def numbered(run: str, seq: int, lines: Iterable[Mapping[str, Any]]) -> list[RequestLine]:
    """``lines`` as :class:`RequestLine` s of batch ``seq`` of ``run``, in order."""
    return [RequestLine(run, seq, pos, line) for pos, line in enumerate(lines)]


def submitted_line(
    submitted: Any, hashes: Mapping[str, str], remove_reason: str | None, at: str
) -> dict[str, Any]:
    """The ``submitted`` line of one request (``hashes``: subject_key -> fields_hash)."""
    rows: list[Row] = submitted.rows
    return {
        "kind": "submitted",
        "request_id": submitted.request_id,
        "audience_id": submitted.audience_id,
        "op": submitted.op,
        "remove_reason": remove_reason,
        "at": at,
        "subject_keys": [r.subject_key for r in rows],
        "send_keys": [r.send_key for r in rows],
        "fields_hashs": [hashes[r.subject_key] for r in rows],
        "destination_refs": [r.destination_ref for r in rows],
        "fields": [dict(r.fields) for r in rows],
    }


def withdraw_unsent(
    con: duckdb.DuckDBPyConnection, segment: str, destination: str, run: str, first_seq: int
) -> None:
    """Delete the request lines of batches ``first_seq`` and later of ``run`` (journaled with
    their intents, never sent; see :func:`orchestrator.sync.journal.withdraw_unsent`)."""
    con.execute(
        "DELETE FROM activation.destination_request_journal WHERE segment = ? AND destination = ?"
        " AND run = ? AND seq >= ?",
        [segment, destination, run, first_seq],
    )


def sent_line(subject_keys: Sequence[str]) -> dict[str, Any]:
    """The ``sent`` line of a batch: its subjects' older requests no longer decide their
    state (journaled with the batch's intent, before the call)."""
    return {"kind": "sent", "subject_keys": list(subject_keys)}


def submitted_lines(
    client: object, subject_keys: Sequence[str], hashes: Sequence[str], remove_reason: str | None,
    at: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """After a batch was sent: a ``submitted`` line for every request the client left
    processing (``hashes``: the batch's fields hashes, in the order of ``subject_keys``)."""
    by_key = dict(zip(subject_keys, hashes, strict=True))
    return [
        submitted_line(s, by_key, remove_reason, at)
        for s in client.take_submitted()  # type: ignore[attr-defined]
    ]


_INSERT_SQL = """
    INSERT INTO activation.destination_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def fold_requests(con: duckdb.DuckDBPyConnection, *, segment: str, destination: str) -> int:
    """Apply the pair's lines of ``activation.destination_request_journal`` to
    ``activation.destination_requests`` in order (run, batch, position) and delete them, in
    the caller's transaction (the one folding the sync journal: see
    :func:`orchestrator.sync.state.fold_journal`'s ``before_fold``). Folding the same lines
    twice gives the same table. Returns the lines applied."""
    pair = [segment, destination]
    found = con.execute(
        "SELECT line FROM activation.destination_request_journal"
        " WHERE segment = ? AND destination = ? ORDER BY run, seq, pos",
        pair,
    ).fetchall()
    for (raw,) in found:
        _apply(con, pair, json.loads(raw))
    if found:
        con.execute(
            "DELETE FROM activation.destination_request_journal"
            " WHERE segment = ? AND destination = ?",
            pair,
        )
    return len(found)


#: Run id of the lines imported from a local file of an earlier version (before any run).
_IMPORTED_RUN = "0" * 20 + "-imported"


def file_requests_path(state_dir: Path, segment: str, destination: str) -> Path:
    """Where earlier versions kept the pair's request journal: ``<state_dir>/journal/<segment>__
    <destination>.requests.jsonl``."""
    return Path(state_dir) / "journal" / f"{segment}__{destination}.requests.jsonl"


def import_file_requests(
    con: duckdb.DuckDBPyConnection, state_dir: Path, segment: str, destination: str
) -> int:
    """Move a request journal an earlier version left as a local file into the table (one
    transaction), then delete the file; returns the lines imported (0 when there is no file).
    A torn last line (a crash mid-write) is left out. A crash between the commit and the
    deletion imports the lines again: applying them twice gives the same table."""
    path = file_requests_path(state_dir, segment, destination)
    if not path.is_file():
        return 0
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    con.begin()
    try:
        append_lines(con, segment, destination, numbered(_IMPORTED_RUN, 0, lines))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    path.unlink()
    return len(lines)


def _apply(con: duckdb.DuckDBPyConnection, pair: list[str], line: Mapping[str, Any]) -> None:
    kind = line.get("kind")
    if kind == "resolved":
        con.execute(
            "DELETE FROM activation.destination_requests WHERE segment = ? AND destination = ?"
            " AND request_id = ?",
            [*pair, line["request_id"]],
        )
    elif kind == "sent":
        con.execute(
            "DELETE FROM activation.destination_requests WHERE segment = ? AND destination = ?"
            " AND subject_key IN (SELECT unnest(?))",
            [*pair, line["subject_keys"]],
        )
    elif kind == "submitted":
        at = datetime.fromisoformat(line["at"])
        rows = zip(
            line["subject_keys"],
            line["send_keys"],
            line["fields_hashs"],
            line["destination_refs"],
            line["fields"],
            strict=True,
        )
        head = [*pair, line["request_id"], line["audience_id"], line["op"], line["remove_reason"]]
        con.executemany(
            _INSERT_SQL,
            [
                [*head, key, send, fh, ref, json.dumps(fields), at]
                for key, send, fh, ref, fields in rows
            ],
        )


@dataclass(frozen=True)
class Outstanding:
    """One outstanding request: its id, ``op``, ``remove_reason``, audience, and per row the
    :class:`Row` sent and its ``fields_hash``."""

    request_id: str
    op: str
    remove_reason: str | None
    audience_id: str
    rows: list[Row]
    hashes: list[str]


def outstanding(
    con: duckdb.DuckDBPyConnection, *, segment: str, destination: str
) -> list[Outstanding]:
    """The pair's outstanding requests, oldest first."""
    found = con.execute(
        """
        SELECT request_id, op, remove_reason, audience_id, subject_key, send_key,
               destination_ref, fields_json, fields_hash
        FROM activation.destination_requests WHERE segment = ? AND destination = ?
        ORDER BY submitted_at, request_id, subject_key
        """,
        [segment, destination],
    ).fetchall()
    requests: dict[str, Outstanding] = {}
    for rid, op, reason, audience, key, send, ref, fields, fh in found:
        if rid not in requests:
            requests[rid] = Outstanding(rid, op, reason, audience, [], [])
        requests[rid].rows.append(Row(key, send, json.loads(fields), ref))
        requests[rid].hashes.append(fh)
    return list(requests.values())


@dataclass
class Confirmation:
    """What confirming a pair's outstanding requests found: ``results`` per request (request,
    its row results), ``resolved`` request ids, ``still_processing`` count and ``unknown``
    (requests the platform no longer knows: their rows stay pending and are sent again)."""

    results: list[tuple[Outstanding, list[RowResult]]]
    resolved: list[str]
    still_processing: int = 0
    unknown: int = 0


def confirm(client: Any, requests: Sequence[Outstanding]) -> Confirmation:
    """Ask the platform for each request's status (no warehouse connection is open here).

    A final status gives row results (:meth:`GoogleAudienceClient.settle`: a partial failure
    is split and sent again); a request still processing is left as it is; a request the
    platform does not know any more (404) is resolved without results (its rows stay pending).

    Raises:
        destinations.errors.TransientError: the platform could not be reached; nothing is
            resolved for the requests not yet asked.
    """
    from destinations.google import SubmittedRequest  # the only asynchronous client today

    out = Confirmation([], [])
    for request in requests:
        try:
            status = client.request_status(request.request_id)
        except PermanentError:
            out.unknown += 1
            out.resolved.append(request.request_id)
            continue
        if status.status not in ("SUCCESS", "PARTIAL_SUCCESS", "FAILED"):
            out.still_processing += 1
            continue
        submitted = SubmittedRequest(
            request.request_id, request.op, request.audience_id, request.rows
        )
        out.results.append((request, client.settle(submitted, status)))
        out.resolved.append(request.request_id)
    return out


def now_iso() -> str:
    """UTC now as a naive ISO 8601 string (the journal's ``at``)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def resolve_lines(request_ids: Iterable[str]) -> list[dict[str, Any]]:
    """``resolved`` lines for ``request_ids``."""
    return [{"kind": "resolved", "request_id": rid} for rid in request_ids]


__all__ = [
    "AsyncClient",
    "Confirmation",
    "DestinationError",
    "Outstanding",
    "RequestLine",
    "append_lines",
    "confirm",
    "file_requests_path",
    "fold_requests",
    "import_file_requests",
    "is_async",
    "now_iso",
    "numbered",
    "outstanding",
    "resolve_lines",
    "sent_line",
    "submitted_line",
    "submitted_lines",
    "withdraw_unsent",
]
