"""Fetching a job's ``image_url``: the SSRF guard of webhooks, pinned, with redirects re-checked and caps.

Every hop is resolved once, checked, and connected to at exactly the checked address
(``shared.pinned_http``); a redirect is a new hop, checked again, at most ``MAX_REDIRECTS`` of them. The
body is read in chunks up to the upload limit within one overall deadline, then sniffed like an upload.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urljoin

import requests
import urllib3

from shared.pinned_http import RESOLVE_SECONDS, NotResolved, RefusedDestination, pinned_request

MAX_REDIRECTS = 3
CHUNK = 256 * 1024


class FetchFailed(RuntimeError):
    """The input could not be fetched; ``code`` is the job's stable error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def fetch(url: str, allow_private: bool, max_bytes: int, timeout: float) -> bytes:
    """The bytes at ``url`` (following at most ``MAX_REDIRECTS`` checked redirects)."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchFailed("input_fetch_failed", f"fetching the image took longer than {timeout:.0f} s")
        try:
            response = pinned_request("GET", url, allow_private, min(RESOLVE_SECONDS, left), deadline, stream=True,
                                      timeout=(min(5.0, left), left), headers={"Accept": "image/*"})
        except NotResolved as exc:  # a name that does not resolve now is not a refused destination
            raise FetchFailed("input_fetch_failed", f"could not fetch the image: {exc}") from exc
        except RefusedDestination as exc:
            raise FetchFailed("input_url_refused", f"refused: {exc}") from exc
        except requests.RequestException as exc:
            raise FetchFailed("input_fetch_failed", f"could not connect to fetch the image ({type(exc).__name__})") \
                from exc
        with response:
            if 300 <= response.status_code < 400 and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status_code != 200:
                raise FetchFailed("input_fetch_failed", f"the image URL answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:  # a malformed length is left to the byte cap
                raise FetchFailed("input_too_large", f"the image is {declared} bytes; the limit is {max_bytes}")
            return _read_body(response, max_bytes, deadline, timeout)
    raise FetchFailed("input_fetch_failed", f"more than {MAX_REDIRECTS} redirects")


def _read_body(response: requests.Response, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """The body, read as it arrives, within the overall deadline.

    Why not ``iter_content``: it waits for whole chunks, and a socket's read timeout bounds each wait, not the
    sum, so a server trickling a byte at a time would hold a worker far past the deadline. Here each read
    returns what one receive brought, and a timer closes the response at the deadline, which ends a read
    blocked in between."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        response.close()

    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
    timer.start()
    body = bytearray()
    try:
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            body += chunk
            if len(body) > max_bytes:
                raise FetchFailed("input_too_large", f"the image is larger than the limit of {max_bytes} bytes")
            if expired.is_set():
                break
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if not expired.is_set():
            raise FetchFailed("input_fetch_failed", "the connection broke while fetching the image") from exc
    finally:
        timer.cancel()
    if expired.is_set():
        raise FetchFailed("input_fetch_failed", f"fetching the image took longer than {timeout:.0f} s")
    return bytes(body)
