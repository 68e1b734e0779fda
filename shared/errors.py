"""Stable, machine-readable error codes: the one table behind docs/errors.md.

API errors carry an HTTP status; job failure codes appear in ``job.error.code``.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded


class Refusal(Exception):
    """An error whose message says in words what is wrong and what to do (a bad option, a file to fix), not a
    bug: the command line prints it in one line, without a traceback."""


NOT_THE_FILES: tuple[type[BaseException], ...] = (MemoryError, SoftTimeLimitExceeded)
"""Raised inside a codec but saying nothing about the file: the process ran out of memory, or the job out of
time (Celery's soft limit is raised wherever the task is, a decoder included). A codec's catch-all that turns
its failures into "the file is unreadable" lets these through: a job past its time limit was failed
``input_unreadable``, telling its user the photo was corrupt."""


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    title: str


def problem_body(code: str, detail: str | None = None, **extra) -> dict:
    """The RFC 9457 problem-details body of ``code``: the API's answers and the ones its HTTP server gives before
    the API sees a request (``cli.gunicorn_worker``) are the same shape."""
    error = API_ERRORS[code]
    return {"type": f"/docs/errors#{code}", "title": error.title, "status": error.status, "code": code,
            "detail": detail or error.title, **extra}


def _table(*codes: ErrorCode) -> dict[str, ErrorCode]:
    return {c.code: c for c in codes}


API_ERRORS = _table(
    ErrorCode("bad_request", 400, "The request is malformed"),
    ErrorCode("missing_image", 400, "No image file in the 'image' form field"),
    ErrorCode("invalid_cursor", 400, "The pagination cursor is not valid"),
    ErrorCode("unauthorized", 401, "A valid API key is required"),
    ErrorCode("invalid_signature", 403, "The file link signature is not valid"),
    ErrorCode("cross_site_request", 403, "A browser request from another site was refused"),
    ErrorCode("not_found", 404, "No such resource"),
    ErrorCode("method_not_allowed", 405, "Method not allowed on this resource"),
    ErrorCode("result_not_ready", 409, "The job has not succeeded (yet): no result to fetch"),
    ErrorCode("not_cancelable", 409, "The job has already finished and cannot be canceled"),
    ErrorCode("job_not_finished", 409, "The job is queued or running: cancel it before deleting its images"),
    ErrorCode("idempotency_conflict", 409, "The Idempotency-Key was used for a different request"),
    ErrorCode("delivery_in_progress", 409, "An attempt at this webhook message is being made now"),
    ErrorCode("secret_not_rotatable", 409, "This tenant's webhook secret is rotated with the deployment's only"),
    ErrorCode("link_expired", 410, "The file link has expired"),
    ErrorCode("result_expired", 410, "The job's files were deleted (the retention period, or its owner's DELETE)"),
    ErrorCode("payload_too_large", 413, "The upload exceeds the maximum request size"),
    ErrorCode("unsupported_image", 415, "The file is not an image in a supported format"),
    ErrorCode("precondition_failed", 412, "The file does not match the request's If-Match or If-Unmodified-Since"),
    ErrorCode("uri_too_long", 414, "The request line (method, path and query) is too long"),
    ErrorCode("range_not_satisfiable", 416, "The requested byte range lies outside the file"),
    ErrorCode("headers_too_large", 431, "The request's headers are too many or too large"),
    ErrorCode("invalid_parameter", 422, "A parameter has an invalid value"),
    ErrorCode("image_too_large", 422, "The input image has more pixels than allowed"),
    ErrorCode("output_too_large", 422, "The upscaled image would exceed a size limit"),
    ErrorCode("unknown_model", 422, "No such model"),
    ErrorCode("webhook_url_refused", 422, "The webhook URL points to a refused destination"),
    ErrorCode("image_url_refused", 422, "The image URL points to a refused destination"),
    ErrorCode("rate_limited", 429, "Too many requests in this minute"),
    ErrorCode("too_many_active_jobs", 429, "Too many jobs queued or running"),
    ErrorCode("quota_exceeded", 429, "The daily megapixel quota would be exceeded"),
    ErrorCode("internal_error", 500, "Internal server error"),
    ErrorCode("service_unavailable", 503, "A backing service is unreachable; retry later"),
)

JOB_ERRORS = _table(
    ErrorCode("input_missing", 0, "The input object is gone from storage"),
    ErrorCode("input_unreadable", 0, "The input could not be decoded as an image"),
    ErrorCode("input_fetch_failed", 0, "The image_url could not be fetched (unreachable, HTTP error, timeout)"),
    ErrorCode("input_url_refused", 0, "The image_url (or a redirect) points to a refused destination"),
    ErrorCode("input_too_large", 0, "The image at image_url is larger than the upload limit"),
    ErrorCode("image_too_large", 0, "The fetched image has more pixels than allowed"),
    ErrorCode("output_too_large", 0, "The upscaled fetched image would exceed a size limit"),
    ErrorCode("unsupported_scale", 0, "The model cannot make the size asked of the fetched image (not its scales)"),
    ErrorCode("quota_exceeded", 0, "The fetched image's output megapixels would pass the daily quota"),
    ErrorCode("engine_failed", 0, "The upscaling engine failed"),
    ErrorCode("storage_failed", 0, "Reading or writing object storage failed"),
    ErrorCode("time_limit", 0, "The job ran past its time limit"),
    ErrorCode("worker_lost", 0, "Attempts at the job stopped without an ending too many times"),
    ErrorCode("internal_error", 0, "Unexpected error while processing the job"),
)
