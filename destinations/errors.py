"""One exception hierarchy for every destination client.

``DestinationError``
    ``TransientError``: the platform could not take the call now (throttled, 5xx, timeout,
    dropped connection) and retries ran out; the same call may succeed later.
    ``PermanentError``: the platform refused the call itself (a non-retryable 4xx); retrying the
    same request will fail the same way.
        ``AuthError``: 401/403, the token is missing, wrong or lacks permission.

Messages carry the destination name, HTTP status and the platform's own error words, never the
token and never a raw email address.
"""

from __future__ import annotations

from datetime import datetime


class DestinationError(Exception):
    """Base class: a call to a destination failed as a whole (no row was acknowledged)."""

    def __init__(self, destination: str, message: str, status: int | None = None) -> None:
        self.destination = destination
        self.status = status
        prefix = f"{destination}: HTTP {status}: " if status else f"{destination}: "
        #: When the platform said the call may be tried again (UTC), when it said so.
        self.retry_at: datetime | None = None
        super().__init__(prefix + message)


class TransientError(DestinationError):
    """Throttling, server errors, timeouts or dropped connections that outlasted the retries."""


class PermanentError(DestinationError):
    """A non-retryable refusal of the whole call (4xx other than throttling)."""


class AuthError(PermanentError):
    """The token is missing, invalid or not allowed (HTTP 401/403)."""


class ThrottledError(TransientError):
    """A :class:`TransientError` whose last failure was throttling (429 or a rate-limit code):
    the platform wants fewer calls, so a scheduler may back off longer before the next run."""


class EmptyIdentifierError(ValueError):
    """A client was asked to send a row that names nobody (an empty address, hash or member
    id); raised before any request, so the platform never receives it."""
