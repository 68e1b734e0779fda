"""Sending a stored file from local storage (a job's result, a signed link's file): ``send_file`` with RFC 9110's
reading of ``Range`` and preconditions, the one way both download routes answer."""

from __future__ import annotations

from pathlib import Path

from flask import Response, request, send_file
from werkzeug.http import parse_range_header

from api.errors import ApiError


def send_download(path: Path, **options) -> Response:
    """``path`` as an attachment, resumable by one byte range.

    A ``Range`` the server does not serve as asked (bad syntax, another unit, several ranges) is ignored and the
    whole file sent (RFC 9110 section 14.2, as S3 does): Werkzeug answered 416, which resumable downloaders read as
    "the file is complete". A failed ``If-Match`` or ``If-Unmodified-Since`` is a 412 problem without the file
    (Werkzeug sent the whole image with status 412). A range past the end stays 416 with the file's length."""
    if request.headers.get("Range") and not _one_byte_range(request.headers["Range"]):
        request.environ.pop("HTTP_RANGE", None)
    response = send_file(path, max_age=0, as_attachment=True, **options)
    if response.status_code == 412:
        response.close()
        raise ApiError("precondition_failed", "the file does not match If-Match or has changed since "
                                              "If-Unmodified-Since; fetch it whole again")
    return response


def _one_byte_range(value: str) -> bool:
    parsed = parse_range_header(value)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
