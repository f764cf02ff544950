"""The HTTP server: one ``ThreadingHTTPServer`` on 127.0.0.1 serving both mock platforms.

Routing: ``/healthz``; ``/{meta,mailchimp,google}/_control/...`` (control API, no auth);
``/meta/...`` (Meta-shaped), ``/mailchimp/3.0/...`` (Mailchimp-shaped) and ``/google/v1/...``
(Google Data Manager API-shaped). Every
platform request is counted against the queued faults, logged and, for Mailchimp, counted
against the limit of 10 simultaneous requests (the 11th gets a 429 without Retry-After, as
Mailchimp does).

Responses are HTTP/1.1 with keep-alive, written in one ``send`` with ``TCP_NODELAY``: separate
small writes cost about 40 ms per request on loopback (see RECIPES.md).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from destinations.mock import control, faults, google_api, mailchimp_api, meta_api
from destinations.mock.store import Store
from destinations.mock.wire import Request, Response, json_response

HOST = "127.0.0.1"
DEFAULT_META_TOKEN = "mock-meta-token"
DEFAULT_MAILCHIMP_TOKEN = "mock-mailchimp-token"
DEFAULT_GOOGLE_TOKEN = "mock-google-token"
MAX_BODY_BYTES = 64 * 1024 * 1024


class MockServer(ThreadingHTTPServer):
    """The mock destinations on ``127.0.0.1:port`` (port 0 picks a free one; see ``.port``).

    Holds the :class:`Store`, the two tokens and the Mailchimp in-flight counter.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: on a busy machine the 6th simultaneous
    # connection waits for a SYN retransmit (1 s, then 3 s), which no real API does.
    request_queue_size = 128

    def __init__(
        self,
        store: Store,
        port: int,
        meta_token: str,
        mailchimp_token: str,
        google_token: str = DEFAULT_GOOGLE_TOKEN,
    ) -> None:
        super().__init__((HOST, port), MockHandler)
        self.store = store
        self.meta_token = meta_token
        self.mailchimp_token = mailchimp_token
        self.google_token = google_token
        google_api.ensure_schema(store)
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The TCP port actually bound."""
        return int(self.server_address[1])

    @contextlib.contextmanager
    def mailchimp_slot(self) -> Iterator[bool]:
        """Count one in-flight Mailchimp request; yields False when over the limit."""
        with self._in_flight_lock:
            self._in_flight += 1
            admitted = self._in_flight <= mailchimp_api.MAX_IN_FLIGHT
        try:
            yield admitted
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1


def make_server(
    state_dir: Path,
    *,
    port: int = 0,
    meta_token: str,
    mailchimp_token: str,
    google_token: str = DEFAULT_GOOGLE_TOKEN,
) -> MockServer:
    """Open the store under ``state_dir`` and bind the server (not yet serving)."""
    return MockServer(Store(state_dir), port, meta_token, mailchimp_token, google_token)


class MockHandler(BaseHTTPRequestHandler):
    """Reads one request, routes it, writes the whole response at once."""

    protocol_version = "HTTP/1.1"
    server_version = "MockDestinations/1.0"
    server: MockServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log lives in the store, and paths are not printed."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._write(json_response(400, {"error": str(exc)}))
            return
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, url.path, url.query, headers, body)
        try:
            response = route(self.server, req)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = json_response(500, {"error": "internal error in the mock server"})
        if response is None:
            self._drop()
        else:
            self._write(response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: Response) -> None:
        try:
            self.wfile.write(encode_response(response, keep_alive=not self.close_connection))
        except OSError:
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def encode_response(response: Response, *, keep_alive: bool) -> bytes:
    """Status line, headers and body as one byte string."""
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {phrase}",
        "Server: MockDestinations/1.0",
        f"Date: {formatdate(usegmt=True)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    if response.status != 204 and response.status >= 200:
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (response.body if response.status != 204 else b"")


def route(server: MockServer, req: Request) -> Response | None:
    """Answer a request; None means drop the connection without answering."""
    if req.path == "/healthz":
        return json_response(200, {"status": "ok"})
    platform = req.path.split("/", 2)[1] if req.path.count("/") >= 2 else ""
    if platform not in ("meta", "mailchimp", "google"):
        return json_response(404, {"error": "unknown path; use /meta, /mailchimp/3.0 or /google"})
    control_prefix = f"/{platform}/_control/"
    if req.path.startswith(control_prefix):
        return control.handle(server.store, platform, req.path[len(control_prefix) :], req)
    if platform in ("meta", "google"):
        return _platform_request(server, platform, req)
    if not req.path.startswith(mailchimp_api.PREFIX + "/"):
        return mailchimp_api.problem(404, "Resource Not Found", "Use /mailchimp/3.0/...")
    with server.mailchimp_slot() as admitted:
        if not admitted:
            response = mailchimp_api.too_many_requests()
            _log(server.store, "mailchimp", req, response.status, None)
            return response
        return _platform_request(server, "mailchimp", req)


def _platform_request(server: MockServer, platform: str, req: Request) -> Response | None:
    store = server.store
    fault = store.take_fault(platform, req.method, req.path)
    action = fault.action if fault else {}
    kind = action.get("type")
    if platform == "meta":
        meta_api.count_violations(store, req)
    elif platform == "google":
        google_api.count_violations(store, req)
    if kind == "drop_connection":
        _log(store, platform, req, None, kind)
        return None
    if kind == "status":
        response = faults.status_response(platform, action, req.path, req)
    else:
        rejects = faults.reject_map(platform, action) if kind == "reject_rows" else None
        answer = faults.answer_options(platform, action) if kind == "answer" else None
        if platform == "meta":
            response = meta_api.handle(store, req, server.meta_token, rejects, answer)
        elif platform == "google":
            response = google_api.handle(store, req, server.google_token, rejects)
        else:
            response = mailchimp_api.handle(store, req, server.mailchimp_token, rejects, answer)
        if kind == "answer":
            response = faults.rewrite_body(response, action)
    _log(store, platform, req, response.status, kind)
    if kind == "timeout_after_apply":
        time.sleep(float(action["seconds"]))
    return response


def _log(store: Store, platform: str, req: Request, status: int | None, fault: str | None) -> None:
    api = {"meta": meta_api, "google": google_api}.get(platform, mailchimp_api)
    values = api.logged_values(req)
    store.log_request(platform, req.method, req.path, _safe_query(req.query), status, fault, values)


def _safe_query(query: str) -> str:
    """The query string with any ``access_token`` value replaced, so tokens never get logged."""
    if "access_token" not in query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "REDACTED" if k == "access_token" else v) for k, v in pairs])
