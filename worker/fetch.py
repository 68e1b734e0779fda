"""Fetching a job's ``image_url``: the SSRF guard of webhooks, pinned, with redirects re-checked and caps.

Every hop is resolved once, checked, and connected to at exactly the checked address
(``shared.pinned_http``); a redirect is a new hop, checked again, at most ``MAX_REDIRECTS`` of them. The
body is read in chunks up to the upload limit within one overall deadline, then sniffed like an upload.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin

import requests

from shared.pinned_http import RefusedDestination, pinned_request

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
            response = pinned_request("GET", url, allow_private, stream=True, timeout=(min(5.0, left), left),
                                      headers={"Accept": "image/*"})
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
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise FetchFailed("input_too_large", f"the image is {declared} bytes; the limit is {max_bytes}")
            body = bytearray()
            try:
                for chunk in response.iter_content(CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchFailed("input_too_large", f"the image is larger than the limit of {max_bytes} "
                                                             "bytes")
                    if time.monotonic() > deadline:
                        raise FetchFailed("input_fetch_failed", f"fetching the image took longer than "
                                                                f"{timeout:.0f} s")
            except requests.RequestException as exc:
                raise FetchFailed("input_fetch_failed", "the connection broke while fetching the image") from exc
            return bytes(body)
    raise FetchFailed("input_fetch_failed", f"more than {MAX_REDIRECTS} redirects")
