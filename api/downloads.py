"""Sending a stored file from local storage (a job's result, a signed link's file): ``send_file`` with RFC 9110's
reading of ``Range`` and preconditions, the one way both download routes answer."""

from __future__ import annotations

from pathlib import Path

from flask import Response, request, send_file
from werkzeug.http import parse_date, parse_etags, parse_range_header

from api.errors import ApiError

# evaluated here, in RFC 9110's order (section 13.2.2), before any Range; Werkzeug is left only If-Range
PRECONDITIONS = ("HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")


def send_download(path: Path, **options) -> Response:
    """``path`` as an attachment, resumable by one byte range.

    Preconditions come first, as RFC 9110 orders them: a failed ``If-Match`` (or, without one,
    ``If-Unmodified-Since``) is a 412 problem without the file, a matching ``If-None-Match`` (or, without one,
    ``If-Modified-Since``) a 304. Werkzeug never read ``If-Unmodified-Since``, served a ``Range`` before checking
    ``If-Match`` (206 where 412 was due) and answered 206 to a matching ``If-None-Match`` with a range.
    A ``Range`` the server does not serve as asked (bad syntax, another unit, several ranges) is ignored and the
    whole file sent (RFC 9110 section 14.2, as S3 does): Werkzeug answered 416, which resumable downloaders read as
    "the file is complete". A range past the end stays 416 with the file's length."""
    try:  # deleted since the route looked (a retention pass): not found, where it answered a 500
        return _send(path, **options)
    except FileNotFoundError:
        raise ApiError("not_found", "the file is no longer stored") from None


def _send(path: Path, **options) -> Response:
    stat = path.stat()
    etag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
    outcome = _precondition(etag, int(stat.st_mtime))
    if outcome == 412:
        raise ApiError("precondition_failed", "the file does not match If-Match or has changed since "
                                              "If-Unmodified-Since; fetch it whole again")
    if outcome == 304:
        response = Response(status=304)
        response.set_etag(etag)
        response.last_modified = stat.st_mtime
        response.cache_control.no_cache = True
        return response
    for name in PRECONDITIONS:
        request.environ.pop(name, None)
    if request.headers.get("Range") and not _one_byte_range(request.headers["Range"]):
        request.environ.pop("HTTP_RANGE", None)
    return send_file(path, max_age=0, as_attachment=True, etag=etag, last_modified=stat.st_mtime, **options)


def _precondition(etag: str, modified: int) -> int | None:
    """412, 304 or None (go on) for this request's preconditions against the file's ETag and modification time
    (whole seconds, as HTTP dates are): If-Match is compared strongly, If-None-Match weakly; a date that cannot be
    read is no condition."""
    headers = request.headers
    if "If-Match" in headers:
        wanted = parse_etags(headers["If-Match"])
        if not (wanted.star_tag or wanted.contains(etag)):
            return 412
    elif (since := parse_date(headers.get("If-Unmodified-Since"))) is not None and modified > since.timestamp():
        return 412
    if "If-None-Match" in headers:
        seen = parse_etags(headers["If-None-Match"])
        if seen.star_tag or seen.contains_weak(etag):
            return 304
    elif (since := parse_date(headers.get("If-Modified-Since"))) is not None and modified <= since.timestamp():
        return 304
    return None


def _one_byte_range(value: str) -> bool:
    parsed = parse_range_header(value)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
