"""Plain request/response records passed between the HTTP handler and the platform modules.

The platform modules (``meta_api``, ``mailchimp_api``, ``control``) never touch sockets: they
take a :class:`Request` and return a :class:`Response`, which keeps them easy to test and lets
the server write each response in a single ``send`` call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


class BadJson(ValueError):
    """The request body is not a JSON document."""


@dataclass
class Request:
    """One parsed HTTP request.

    ``path``: URL path without the query string; ``query``: raw query string;
    ``headers``: header name (lowercase) -> value; ``body``: raw bytes (b"" when none).
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    def json(self) -> Any:
        """The body parsed as JSON (cached). Raises :class:`BadJson` when it is not JSON."""
        if not self._parsed:
            try:
                self._json = json.loads(self.body or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadJson(str(exc)) from exc
            self._parsed = True
        return self._json

    def json_or_none(self) -> Any:
        """The body parsed as JSON, or None when it is missing or not JSON."""
        try:
            return self.json()
        except BadJson:
            return None

    def query_params(self) -> dict[str, str]:
        """Query parameters, last value wins."""
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


@dataclass
class Response:
    """What to answer: status code, body bytes, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int,
    payload: Any,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON response (compact separators, UTF-8)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, content_type, dict(headers or {}))


def empty_response(status: int = 204) -> Response:
    """A response without a body (e.g. Mailchimp's 204 No Content)."""
    return Response(status, b"", "")
