"""Typed errors, one class per family of problem the API (or the network) can give."""

from __future__ import annotations

from typing import Any


class UpscalerError(Exception):
    """Base of every error this SDK raises."""

    # The Idempotency-Key of a submit that may have made its job though no answer said so (set on the
    # ConnectionError or ServerError of ``jobs.create``): retried with a new key, it would make a second job, charged
    # again; ``create(..., idempotency_key=exc.idempotency_key)`` gets the first one, or makes it if it was not.
    idempotency_key: str | None = None


class InvalidApiKey(UpscalerError, ValueError):
    """The API key given cannot be sent (control characters: two lines of a file, say)."""


class ConnectionError(UpscalerError):
    """The API could not be reached (after retries). ``sent`` is False when no try can have reached it (each
    connect refused or timed out, a URL that cannot be called): then nothing was done."""

    def __init__(self, message: str, sent: bool = True):
        super().__init__(message)
        self.sent = sent


class Timeout(UpscalerError):
    """Waiting ran out; the job itself keeps running (cancel it with ``client.jobs.cancel`` if unwanted)."""

    def __init__(self, message: str, job: Any = None):
        super().__init__(message)
        self.job = job


class ApiError(UpscalerError):
    """The API answered with a problem details body (RFC 9457) and a stable ``code``; ``request_id`` (also in the
    message) is what to quote to the operator, whose log lines for that request carry it."""

    def __init__(self, status: int, code: str, detail: str, body: dict | None = None, request_id: str | None = None):
        super().__init__(f"{status} {code}: {detail}" + (f" [request_id={request_id}]" if request_id else ""))
        self.status, self.code, self.detail, self.body = status, code, detail, body or {}
        self.request_id = request_id


class AuthenticationError(ApiError):
    """401: no valid API key."""


class NotFound(ApiError):
    """404: no such job (or not yours)."""


class InvalidRequest(ApiError):
    """Any other 4xx (400, 403, 405, 409, 410, 412, 413, 414, 415, 416, 422, 431): the request itself must change;
    also a write the API redirected (code ``redirected``: the client's base URL must change)."""


class RateLimited(ApiError):
    """429: a rate limit, active-job limit or daily quota; ``retry_after`` seconds from now (may be None), read
    from either form of the header (seconds or an HTTP date)."""

    def __init__(self, status: int, code: str, detail: str, body: dict | None = None,
                 retry_after: float | None = None, request_id: str | None = None):
        super().__init__(status, code, detail, body, request_id)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the service failed or is unavailable (retried before this is raised)."""


class InvalidResponse(ApiError):
    """A 2xx answer that is not the API's JSON object (code ``invalid_response``): an HTML page, as a base URL that
    points at a web server or a proxy's page gives; the message names the URL, the status and the Content-Type.
    requests' own JSONDecodeError escaped ``except UpscalerError``."""


class JobFailed(UpscalerError):
    """The job ended ``failed`` (or ``canceled``); ``code`` is its stable error code."""

    def __init__(self, job: Any):
        error = job.error or {}
        # a job canceled by its owner has no error: its message was "job j1 canceled: canceled: "
        said = ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
        super().__init__(f"job {job.id} {job.status}" + (f": {said}" if said else ""))
        self.job, self.code = job, error.get("code", job.status)


def from_response(status: int, body: dict, retry_after: float | None, note: str | None = None,
                  request_id: str | None = None) -> ApiError:
    """The error for an API answer; ``note`` is added to its detail (what the caller must know besides the
    API's words, such as a request that may have been carried out though the answer is an error). The body's
    ``request_id`` wins over ``request_id`` (the answer's X-Request-Id: all a proxy's HTML page leaves)."""
    code, detail = body.get("code", "error"), body.get("detail", "")
    request_id = body.get("request_id") or request_id
    if note:
        detail = f"{detail} ({note})" if detail else note
    if status == 401:
        return AuthenticationError(status, code, detail, body, request_id)
    if status == 404:
        return NotFound(status, code, detail, body, request_id)
    if status == 429:
        return RateLimited(status, code, detail, body, retry_after, request_id)
    if status >= 500:
        return ServerError(status, code, detail, body, request_id)
    return InvalidRequest(status, code, detail, body, request_id)
