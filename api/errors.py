"""One JSON error format (RFC 9457 problem details + a stable ``code``) for every failure.

Views raise ``ApiError``; ``register_error_handlers`` turns it, any ``HTTPException`` and any
unexpected exception into the same body. Views carry no try/except for this.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from api.request_ids import request_id
from shared.errors import API_ERRORS, problem_body

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_image", 416: "range_not_satisfiable", 503: "service_unavailable"}
# What a Werkzeug error's own headers tell the client and are kept: the methods a resource has (405), the file's
# length a range must fit (416: ``bytes */<length>``, which resumable downloaders read to restart).
KEPT_HEADERS = ("Allow", "Content-Range")


class ApiError(Exception):
    """An error with a stable code from ``shared.errors.API_ERRORS``."""

    def __init__(self, code: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
        self.error = API_ERRORS[code]
        self.detail = detail or self.error.title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)


def problem(code: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
    """The Flask response for an error code."""
    body = problem_body(code, detail, **extra)
    if request_id():
        body["request_id"] = request_id()  # what to quote to the operator, whose log lines carry it
    response = jsonify(body)
    response.status_code = API_ERRORS[code].status
    response.content_type = PROBLEM_JSON
    response.headers.update(headers or {})
    return response


def _too_large(app: Flask) -> str:
    """Which limit a 413 hit: the whole request's, or (a request within it) the form's, which Werkzeug checks
    while parsing: one text field's length (``MAX_FORM_MEMORY_SIZE``, 500 kB by default) or the number of parts
    (``MAX_FORM_PARTS``, 1000); it does not say which."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length <= limit:
        return (f"a form field other than the image is longer than {app.config['MAX_FORM_MEMORY_SIZE']} bytes, or "
                f"the form has more than {app.config['MAX_FORM_PARTS']} parts")
    return f"the upload exceeds the limit of {limit} bytes"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return problem(exc.error.code, exc.detail, exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = HTTP_CODES.get(exc.code or 500, "bad_request" if (exc.code or 500) < 500 else "internal_error")
        detail = exc.description if code != "payload_too_large" else _too_large(app)
        own = dict(exc.get_headers())
        return problem(code, detail, {name: own[name] for name in KEPT_HEADERS if name in own})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem("internal_error", "an unexpected error occurred; it has been logged under this request_id")
