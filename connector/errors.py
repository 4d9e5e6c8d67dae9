"""What can go wrong talking to SendGrid, as exceptions a person can act on.

Every message says what happened and what to do, and quotes SendGrid's own
words when it sent any. None of these exceptions holds an httpx request or
response: those carry the Authorization header, and anything that walks an
exception's attributes or chain (a traceback printer with locals, a crash
reporter) could print the API key. The client raises them outside of its
``except`` blocks for the same reason, so ``__context__`` stays empty.
"""

from __future__ import annotations

from collections.abc import Sequence


class SendGridError(Exception):
    """Base class: ``status`` is the HTTP status (None for network and setup
    problems) and ``sendgrid_message`` SendGrid's own error text, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, sendgrid_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.sendgrid_message = sendgrid_message

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


def _attempts(n: int) -> str:
    return f"{n} attempt{'' if n == 1 else 's'}"


def _quote(sendgrid_message: str | None) -> str:
    return f' SendGrid said: "{sendgrid_message}".' if sendgrid_message else ""


class BadApiKey(SendGridError):
    """401: the key is wrong, revoked or expired; or (``problem``) it cannot be a key
    at all, found before anything was sent."""

    def __init__(self, sendgrid_message: str | None = None, *, problem: str = "") -> None:
        super().__init__(
            (problem or "SendGrid did not accept the API key (401).")
            + _quote(sendgrid_message)
            + " Check that the whole key was pasted (it starts with 'SG.'), that it has not"
            " been deleted or revoked, and that it belongs to this account and region;"
            " create a new one under Settings > API Keys if needed.",
            status=None if problem else 401,
            sendgrid_message=sendgrid_message,
        )


class MissingScope(SendGridError):
    """403, or a key whose scopes lack one we need; ``scopes`` names what is
    missing when known (empty when SendGrid only said "access forbidden")."""

    def __init__(
        self,
        scopes: Sequence[str] = (),
        *,
        action: str = "",
        sendgrid_message: str | None = None,
        status: int | None = 403,
    ) -> None:
        self.scopes = tuple(scopes)
        doing = f" to {action}" if action else ""
        if self.scopes:
            what = f"The API key lacks the permission{'s' if len(self.scopes) > 1 else ''} "
            what += ", ".join(repr(s) for s in self.scopes) + f" needed{doing}."
        else:
            what = f"SendGrid did not allow the API key{doing} (403)."
        super().__init__(
            what
            + _quote(sendgrid_message)
            + " Edit the key under Settings > API Keys and give it Marketing access"
            " (full access to Marketing), or create a new key with it.",
            status=status,
            sendgrid_message=sendgrid_message,
        )


class ListNotFound(SendGridError):
    """404 for a contact list: ``list_id`` names it."""

    def __init__(self, list_id: str, sendgrid_message: str | None = None) -> None:
        self.list_id = list_id
        super().__init__(
            f"SendGrid has no contact list with id {list_id!r} (404)."
            + _quote(sendgrid_message)
            + " It may have been deleted, or belong to another account or region;"
            " pick an existing list or create a new one for this destination.",
            status=404,
            sendgrid_message=sendgrid_message,
        )


class RequestRejected(SendGridError):
    """Any other 4xx: SendGrid refused the request as sent. ``errors`` holds
    SendGrid's ``(field, message)`` pairs."""

    def __init__(
        self,
        status: int,
        endpoint: str,
        errors: Sequence[tuple[str | None, str]] = (),
        *,
        hint: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.errors = tuple(errors)
        quoted = "; ".join(
            f"{field}: {message}" if field else message for field, message in self.errors
        )
        super().__init__(
            f"SendGrid rejected {endpoint} ({status})."
            + _quote(quoted)
            + (f" {hint}" if hint else "")
            + " Nothing was changed by this request; correct the data or settings it names"
            " and run again (retrying it unchanged gives the same answer).",
            status=status,
            sendgrid_message=quoted or None,
        )


class RateLimited(SendGridError):
    """429 after the retry budget was spent."""

    def __init__(
        self, endpoint: str, attempts: int, waited: float, sendgrid_message: str | None = None
    ) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"SendGrid kept rate limiting {endpoint}: {_attempts(attempts)} over {waited:.0f} s"
            " of waiting did not get through."
            + _quote(sendgrid_message)
            + " Another tool may be using the same account's limits; wait a few minutes"
            " and run again (a resumed run skips the batches already confirmed).",
            status=429,
            sendgrid_message=sendgrid_message,
        )


class SendGridUnavailable(SendGridError):
    """5xx after the retry budget was spent."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        attempts: int,
        waited: float,
        sendgrid_message: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"SendGrid answered {endpoint} with a server error ({status});"
            f" {_attempts(attempts)} over {waited:.0f} s did not get through."
            + _quote(sendgrid_message)
            + " SendGrid may be having trouble (see status.sendgrid.com); run again later"
            " (a resumed run skips the batches already confirmed).",
            status=status,
            sendgrid_message=sendgrid_message,
        )


class NetworkError(SendGridError):
    """Connect/read/write failures or timeouts after the retry budget was spent."""

    def __init__(self, host: str, endpoint: str, reason: str, attempts: int) -> None:
        self.host = host
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(
            f"Could not talk to {host} for {endpoint}"
            f" ({reason.rstrip('.')}; {_attempts(attempts)})."
            " Check the network connection, proxy and firewall, and that the address is"
            " right; then run again.",
        )


class InsecureURL(SendGridError):
    """Plain http:// to a host that is not this machine: the key would travel in clear."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"Refusing to send the API key over plain http to {url}: anyone on the way could"
            " read it. Use https://, or http:// only for this machine (127.0.0.1, ::1,"
            " localhost), such as the local SendGrid emulator."
        )


class UnexpectedAnswer(SendGridError):
    """An answer segsync cannot read: not the JSON object expected, a field missing
    or of the wrong type, a body that could not be decoded. Not retried: what was
    sent may have been applied, and asking again rarely changes the shape of the
    answer. ``endpoint`` and ``detail`` say which call and what was wrong."""

    def __init__(self, endpoint: str, detail: str, *, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.detail = detail
        code = f" ({status})" if status is not None else ""
        super().__init__(
            f"SendGrid's answer to {endpoint}{code} could not be used: {detail.rstrip('.')}."
            " If a proxy or security gateway sits between this machine and SendGrid, check"
            " that it passes SendGrid's answers through unchanged; otherwise run again"
            " later and report it if it persists.",
            status=status,
        )


class ResponseTooLarge(UnexpectedAnswer):
    """An answer bigger than the cap for its kind of call: reading stopped there,
    so a runaway server or proxy cannot fill the memory. ``limit`` is in bytes."""

    def __init__(self, endpoint: str, limit: int, *, status: int | None = None) -> None:
        self.limit = limit
        super().__init__(
            endpoint,
            f"it was larger than {limit / 1_048_576:g} MB, far beyond any answer this call"
            " can legitimately have, so reading stopped there",
            status=status,
        )


class RequestCancelled(Exception):
    """The client was cancelled (``SendGridClient.cancel()`` or its ``cancel`` event)
    while this call waited to send, or before it started.

    Deliberately not a ``SendGridError``: nothing failed, and code that reports
    SendGrid failures must not report this as one. ``attempts_sent`` says how
    many attempts of this call reached the wire before the cancel: 0 means
    SendGrid certainly never saw it; more means an earlier attempt (answered
    5xx, or cut off) may have been applied, as with any unconfirmed request.
    """

    def __init__(self, endpoint: str, attempts_sent: int = 0) -> None:
        self.endpoint = endpoint
        self.attempts_sent = attempts_sent
        sent = (
            "it was never sent"
            if attempts_sent == 0
            else f"{_attempts(attempts_sent)} had reached SendGrid"
        )
        super().__init__(f"Cancelled before {endpoint} got through ({sent}).")
