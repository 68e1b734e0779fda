"""The HTTP client: retries with back-off, automatic idempotency keys, pagination, typed results."""

from __future__ import annotations

import calendar
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import NewConnectionError

from upscaler_client import errors
from upscaler_client.types import Job, Model, Usage

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_POLL_SECONDS = 2.0
RETRY_STATUSES = {429, 502, 503, 504}
PASSING_STATUSES = {502, 503, 504}  # an API restarting or away behind its proxy: wait() polls on through them
MAX_RETRY_AFTER = 60.0
MAX_PREFER_WAIT = 60  # the longest Prefer: wait the API honours (docs/api.md)
# Failures after which another try may get the answer; a body cut off mid-way (a proxy restarting) is one too
LOST_ANSWERS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Failures found before anything is sent (a URL or a header requests cannot send): nothing can have been done
NEVER_SENT = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
              requests.exceptions.InvalidHeader)
FOLLOWED = ("GET", "HEAD")  # methods sent on through redirects: a redirected POST came back a GET


class Client:
    """``Client(base_url=None, api_key=None)`` reads ``UPSCALER_API_URL`` and ``UPSCALER_API_KEY`` when not given."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5):
        self.base_url = (base_url or os.environ.get("UPSCALER_API_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("UPSCALER_API_KEY")
        # a key read from a file (a Kubernetes secret) often ends in a newline: as a header it failed every request
        # and the error quoted the key itself
        self.api_key = key.strip() if key else key
        if self.api_key and not self.api_key.isprintable():
            raise errors.InvalidApiKey("the API key holds control characters (two lines of a file, a tab?): give "
                                       "the key alone" + ("" if api_key is not None else " in UPSCALER_API_KEY"))
        if not isinstance(timeout, int | float) or not timeout > 0:
            # None ("wait forever", to requests) would let a hung API hold a call for good: a lost answer is found,
            # and retried, only through each try's timeout
            raise ValueError(f"timeout is the seconds each try of a call may take, above 0; not {timeout!r}")
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.http = requests.Session()
        if self.api_key:
            self.http.headers["Authorization"] = f"Bearer {self.api_key}"
        self.http.headers["User-Agent"] = "upscaler-client/0.2"
        self.jobs = Jobs(self)
        self.models = Models(self)

    def webhook_secret(self) -> str:
        """The ``whsec_`` secret this key's tenant's webhook messages are signed with (for ``verify_webhook``)."""
        return _body(self.request("GET", "/v1/webhooks/secret"))["secret"]

    def usage(self) -> Usage:
        """This key's limits and what it uses of them now (active jobs, today's output megapixels), to pace
        submits before a 429."""
        return Usage.from_json(_body(self.request("GET", "/v1/usage")))

    def rotate_webhook_secret(self) -> str:
        """A new webhook secret for this key's tenant (returned); the previous one also signs each message for 24
        hours, so receivers can switch to the new one without missing any."""
        # not repeatable: a second rotation would stop the secret the first one kept signing for its grace
        return _body(self.request("POST", "/v1/webhooks/secret/rotate", repeatable=False))["secret"]

    def request(self, method: str, path: str, *, deadline: float | None = None, repeatable: bool = True,
                **kwargs: Any) -> requests.Response:
        """One API call, retried on connection errors, 429 and 5xx-unavailable with back-off and Retry-After;
        ``deadline`` (a ``time.monotonic()`` value) bounds the whole call, retries and waits included. A call that
        is not ``repeatable`` (done twice, it does something else) is sent again only if it cannot have been
        carried out (a connect that failed, an answer ``_not_done``), never after a lost answer: a proxy's 502 or
        504 can come after the API did it. A call other than a read is not sent on through a redirect (a POST
        redirected from http to https came back a GET, and a submit a listing of jobs): that raises."""
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        files = kwargs.pop("files", None)
        timeout = kwargs.pop("timeout", self.timeout)  # a call that waits at the API (Prefer: wait) needs longer
        kwargs.setdefault("allow_redirects", method in FOLLOWED)
        sent = False  # whether a try may have reached the API (a later one refused does not undo that)
        for attempt in range(self.max_retries + 1):
            if files:  # a retried upload must send the file again from its start
                for _, (_, handle) in files.items():
                    if hasattr(handle, "seek"):
                        handle.seek(0)
            last = attempt == self.max_retries or _left(deadline) <= 0
            try:
                response = self.http.request(method, url, timeout=_bounded(timeout, deadline), files=files,
                                             **kwargs)
            except LOST_ANSWERS as exc:  # worth another try
                unsent = _unsent(exc)
                sent = sent or not unsent
                if not repeatable and not unsent:
                    raise errors.ConnectionError(f"no answer from {self.base_url} (it may have been done; check "
                                                 f"before trying again): {exc}") from exc
                if last or not self._sleep(attempt, None, deadline):
                    failed = "cannot reach" if unsent else "no answer from"
                    raise errors.ConnectionError(f"{failed} {self.base_url}: {exc}", sent) from exc
                continue
            except requests.RequestException as exc:  # a bad URL, a redirect loop: another try cannot help
                raise errors.ConnectionError(f"cannot call {url}: {exc}", sent or not _unsent(exc)) from exc
            sent = True
            if response.is_redirect and method not in FOLLOWED:
                raise _redirected(method, response)
            retry_after = _retry_after(response)
            # a wait past MAX_RETRY_AFTER (the daily quota: until midnight UTC) is the caller's to decide
            worth_waiting = retry_after is None or retry_after <= MAX_RETRY_AFTER
            sendable_again = repeatable or _not_done(response)
            if response.status_code in RETRY_STATUSES and sendable_again and not last and worth_waiting \
                    and self._sleep(attempt, retry_after, deadline):
                continue
            if response.status_code >= 400:
                lost = response.status_code >= 500 and not sendable_again
                raise _error(response, "it may have been done; check before trying again" if lost else None)
            return response
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: float | None, deadline: float | None = None) -> bool:
        """Wait before the next try; False (without waiting) when the wait would pass ``deadline``."""
        delay = retry_after if retry_after is not None else self.backoff * 2 ** attempt * (0.8 + 0.4 * random.random())
        delay = min(delay, MAX_RETRY_AFTER)
        if delay >= _left(deadline):
            return False
        time.sleep(delay)
        return True


def result_path(job: Job, path: str | Path) -> Path:
    """Where ``download(job, path)`` writes: ``path``, or the result's own name inside it when ``path`` is a folder,
    existing or named with a trailing separator (read before ``Path`` drops it)."""
    folder = str(path).endswith(("/", os.sep, "."))
    path = Path(path).expanduser()
    return path / (job.output.filename or f"{job.id}.{job.output.format}") if folder or path.is_dir() else path


def _unsent(exc: requests.RequestException) -> bool:
    """Whether a failure came before the request could reach the API (a connect refused or timed out, a host name
    that does not resolve, a URL that cannot be called), so that nothing can have been done; a read timeout, a
    reset or a body cut off came after. urllib3 gives the cause as ``MaxRetryError.reason``: a name that does not
    resolve is its NameResolutionError, a NewConnectionError whose repr does not say so (it read as "the job may
    have been created")."""
    if isinstance(exc, (requests.ConnectTimeout, *NEVER_SENT)):
        return True
    cause = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)
    # through a proxy (HTTPS_PROXY, client.http.proxies) a proxy that cannot be reached is urllib3's ProxyError
    # around the same NewConnectionError: nothing went past this machine either
    cause = getattr(cause, "original_error", cause) if isinstance(cause, urllib3_exceptions.ProxyError) else cause
    return isinstance(cause, NewConnectionError)


def _left(deadline: float | None) -> float:
    """Seconds until ``deadline`` (unbounded without one)."""
    return float("inf") if deadline is None else deadline - time.monotonic()


def _bounded(timeout: float, deadline: float | None) -> float:
    """A request's timeout that ends by ``deadline`` (at least a moment, so the last try can still answer)."""
    return max(0.1, min(timeout, _left(deadline)))


def _job_path(job_id: str, suffix: str = "") -> str:
    """A job's URL path; the id is escaped (an id from elsewhere could otherwise name another route)."""
    return f"/v1/jobs/{quote(str(job_id), safe='')}{suffix}"


def _body(response: requests.Response) -> dict:
    """The JSON object of a 2xx answer. Anything else (an HTML page: a base URL pointing at a web server, a proxy's
    or a captive portal's page) raises ``InvalidResponse`` naming the URL, the status and the Content-Type; it was
    requests' own JSONDecodeError, which ``except UpscalerError`` missed, or a TypeError for a JSON list."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    kind = response.headers.get("Content-Type") or "no Content-Type"
    raise errors.InvalidResponse(response.status_code, "invalid_response",
                                 f"{response.url} answered {kind}, not the API's JSON: is the client's base_url "
                                 "(UPSCALER_API_URL) the API's address?",
                                 request_id=response.headers.get("X-Request-Id"))


def _json_or_text(response: requests.Response) -> dict:
    """The problem body; one that is not a JSON object (a proxy's HTML page, a list) is given as its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"code": "http_error", "detail": response.text[:200]}


def _error(response: requests.Response, note: str | None = None) -> errors.ApiError:
    """The typed error of an answer >= 400, with the request id the body or the X-Request-Id header gives (a
    proxy's error page has only the header)."""
    return errors.from_response(response.status_code, _json_or_text(response), _retry_after(response), note,
                                response.headers.get("X-Request-Id"))


def _redirected(method: str, response: requests.Response) -> errors.InvalidRequest:
    """The error of a call other than a read that the API redirected: where to point the client instead."""
    location = response.headers.get("Location")
    return errors.InvalidRequest(response.status_code, "redirected",
                                 f"{method} {response.url} was redirected to {location}, which is not followed for "
                                 "a call that changes something: make that address the client's base_url "
                                 "(UPSCALER_API_URL)", request_id=response.headers.get("X-Request-Id"))


def _not_done(response: requests.Response) -> bool:
    """Whether an answer says the request was not carried out, so even a call that is not repeatable may be sent
    again: a 429 (limits are checked before anything is done) or the API's own 503, which carries Retry-After
    ("nothing was done"). A 502 or 504, or a 503 without Retry-After, may be a proxy's that lost the API's
    answer after the API had acted."""
    return response.status_code == 429 or (response.status_code == 503 and "Retry-After" in response.headers)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the answer asks to wait, from either form of Retry-After: a number or an HTTP date (which gateways
    and CDNs send; it was ignored, and retried at once). Never below 0 (-1 crashed ``time.sleep``); None when
    there is none that can be read."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = calendar.timegm(parsedate_to_datetime(value).utctimetuple()) - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return None if math.isnan(seconds) else max(0.0, seconds)


@contextmanager
def _naming_the_key(key: str) -> Iterator[None]:
    """Put a submit's Idempotency-Key on an error after which its job may exist (no answer, a 5xx), and say how
    to retry without a second job: a caller trying again with a new key made one, charged again."""
    try:
        yield
    except (errors.ConnectionError, errors.ServerError) as exc:
        if not getattr(exc, "sent", True):  # no try reached the API: nothing was made, a plain retry is safe
            raise
        exc.idempotency_key = key
        exc.args = (f"{exc} (the job may have been created: to retry without making a second one, pass "
                    f"idempotency_key={key!r})",)
        raise


class Jobs:
    def __init__(self, client: Client):
        self.client = client

    def create(self, image: str | os.PathLike[str] | bytes | bytearray | BinaryIO | None = None, *,
               image_url: str | None = None, wait: int | None = None,
               scale: float | None = None, width: int | None = None, height: int | None = None,
               fit: str | None = None, dpi: int | None = None, print_width: float | None = None,
               print_height: float | None = None, print_unit: str | None = None,
               format: str = "png", quality: int | None = None,
               model: str | None = None, denoise: float | str | None = None, webhook_url: str | None = None,
               webhook_events: list[str] | None = None, idempotency_key: str | None = None,
               filename: str | None = None) -> Job:
        """Submit a job from a file path, bytes, an open binary file, or ``image_url``. An ``Idempotency-Key`` is
        added automatically, so a submit retried after a lost answer returns the same job instead of a second one;
        when the retries run out, the error's ``idempotency_key`` is the key to retry with. ``wait`` (1..60 s) asks
        the API to answer with the finished job if it ends by then (``Prefer: wait``), else it answers at once as
        without it; look at ``job.done``."""
        if (image is None) == (image_url is None):
            raise ValueError("give exactly one of image (path, bytes or open file) or image_url")
        whole = isinstance(wait, int) and not isinstance(wait, bool)
        if wait is not None and not (whole and 1 <= wait <= MAX_PREFER_WAIT):
            raise ValueError(f"wait is whole seconds, 1..{MAX_PREFER_WAIT}; not {wait!r}")
        fields = {"scale": scale, "width": width, "height": height, "fit": fit, "dpi": dpi, "print_width": print_width,
                  "print_height": print_height, "print_unit": print_unit, "format": format, "quality": quality,
                  "model": model, "denoise": denoise, "webhook_url": webhook_url, "image_url": image_url,
                  "webhook_events": ",".join(webhook_events) if webhook_events else None}
        data = {k: str(v) for k, v in fields.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key or f"sdk-{uuid.uuid4()}"}
        timeout = self.client.timeout
        if wait is not None:  # the answer may take the whole wait: each try is given that and its own timeout
            headers["Prefer"] = f"wait={wait}"
            timeout += wait
        with _naming_the_key(headers["Idempotency-Key"]):
            if image is None:  # still multipart, as the API takes only that: a url-encoded form was refused 400
                response = self.client.request("POST", "/v1/jobs", headers=headers, timeout=timeout,
                                               files={name: (None, value) for name, value in data.items()})
            elif not isinstance(image, (str, os.PathLike)):  # bytes, or an open file read once (re-sent on a retry)
                content = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else image.read()
                name = getattr(image, "name", None)
                name = filename or (Path(name).name if isinstance(name, str) else "image")
                response = self.client.request("POST", "/v1/jobs", data=data, headers=headers, timeout=timeout,
                                               files={"image": (name, _Bytes(content))})
            else:
                with open(image, "rb") as handle:
                    response = self.client.request("POST", "/v1/jobs", data=data, headers=headers,
                                                   timeout=timeout,
                                                   files={"image": (filename or Path(image).name, handle)})
        return Job.from_json(_body(response), self.client)

    def get(self, job_id: str) -> Job:
        return Job.from_json(_body(self.client.request("GET", _job_path(job_id))), self.client)

    def list(self, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job of this key, newest first, across all pages."""
        cursor = None
        while True:
            params = {"limit": page_size, **({"status": status} if status else {}),
                      **({"cursor": cursor} if cursor else {})}
            page = _body(self.client.request("GET", "/v1/jobs", params=params))
            for item in page["data"]:
                yield Job.from_json(item, self.client)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(_body(self.client.request("POST", _job_path(job_id, "/cancel"))), self.client)

    def delete(self, job_id: str) -> Job:
        """Delete an ended job's input and result now (the job stays, with ``expired_at``); ``InvalidRequest``
        with code ``job_not_finished`` while it is queued or running: cancel it first."""
        return Job.from_json(_body(self.client.request("DELETE", _job_path(job_id))), self.client)

    def wait(self, job_id: str, timeout: float = 3600, on_progress: Callable[[Job], Any] | None = None,
             interval: float | None = None, on_unavailable: Callable[[Exception], Any] | None = None) -> Job:
        """Poll until the job ends: at the API's ``Retry-After`` (2 s; polling every 0.5 s spent a tenant's rate
        limit) unless ``interval`` is given. The API being unreachable, unavailable or busy for a while (a restart
        behind a proxy's 502 or its page served as 200, the API's own 503, a 429) is waited through until the
        deadline, not raised: the job keeps running meanwhile. Every poll ends by the deadline (a hung API held one
        poll for minutes past it).
        ``on_unavailable`` is called with each such error before the wait goes on; what it raises ends the wait
        (``on_progress`` alone could not stop a wait while the API was away: it hears only answers)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.client.request("GET", _job_path(job_id), deadline=deadline)
                body = _body(response)  # a proxy's page served as 200 while the API is away is waited through too
            except (errors.ConnectionError, errors.ServerError, errors.RateLimited, errors.InvalidResponse) as exc:
                if isinstance(exc, errors.ServerError) and exc.status not in PASSING_STATUSES:
                    raise  # a 500 is the API's fault, not an outage to wait out
                if on_unavailable:
                    on_unavailable(exc)
                if _left(deadline) <= 0:  # the last poll was cut at the deadline: waiting ran out, as documented
                    raise errors.Timeout(f"job {job_id}: no answer within {timeout:g} s ({exc}); it keeps "
                                         "running") from exc
                pause = getattr(exc, "retry_after", None) or interval or DEFAULT_POLL_SECONDS
                if _left(deadline) <= pause:
                    raise errors.Timeout(f"job {job_id}: the API was unavailable until the {timeout:g} s deadline "
                                         f"({exc}); it keeps running") from exc
                time.sleep(min(pause, MAX_RETRY_AFTER))
                continue
            job = Job.from_json(body, self.client)
            if on_progress:
                on_progress(job)
            if job.status == "succeeded":
                return job
            if job.done:
                raise errors.JobFailed(job)
            if time.monotonic() >= deadline:
                raise errors.Timeout(f"job {job_id} still {job.status} after {timeout:g} s (it keeps running)", job)
            pause = interval or min(_retry_after(response) or DEFAULT_POLL_SECONDS, MAX_RETRY_AFTER)
            # never past the deadline: a Retry-After of 30 held wait(timeout=3) for 30 s
            time.sleep(max(0.0, min(pause, _left(deadline))))

    def download(self, job_id: str, path: str | Path) -> Path:
        """Save the result through its expiring ``result_url`` (streamed; written atomically)."""
        job = self.get(job_id)
        url = job.result_url
        if job.status != "succeeded" or not url:
            # the API's own answer says why (409 result_not_ready, 410 result_expired), in its documented words; a
            # succeeded job without a link (S3 could not sign one when it was read) has its 303 to one by now
            answer = self.client.request("GET", _job_path(job_id, "/result"), allow_redirects=False)
            url = answer.headers.get("Location") if job.status == "succeeded" and answer.is_redirect else None
            if not url:
                raise errors.InvalidRequest(409, "result_not_ready", f"the job is {job.status}")
        path = result_path(job, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.unlink(missing_ok=True)  # one left by another run is not resumed: what it holds is unknown
        seen: dict[str, str] = {}  # the result's strong ETag, once an answer gave it: what a retry resumes against
        try:
            for attempt in range(self.client.max_retries + 1):
                try:
                    self._fetch(url, partial, job.output.bytes, seen)
                    partial.replace(path)
                    return path
                except (requests.RequestException, errors.ServerError) as exc:  # a reset or a store's 5xx: again
                    if attempt == self.client.max_retries:
                        if isinstance(exc, errors.ServerError):
                            raise
                        raise errors.ConnectionError(f"cannot download the result of job {job_id}: {exc}") from exc
                    self.client._sleep(attempt, None)
        finally:
            partial.unlink(missing_ok=True)  # no half file left beside the target
        raise AssertionError("unreachable")

    def _fetch(self, url: str, partial: Path, size: int | None, seen: dict[str, str]) -> None:
        """Write the result at ``url`` into ``partial``, checked against its ``size`` in bytes when known. What an
        earlier try left there is kept, and the rest asked for by one ``Range`` under ``If-Match`` of the ETag that
        try's answer gave (a reset 2 GB from the end of a 3 GB TIFF was fetched whole again, four times at most):
        206 goes on from there; 412 or 416 (the file changed, or the part is no prefix of it) starts it over; a
        store that ignores the range answers 200 with the whole file, which is written from its start."""
        have = partial.stat().st_size if "etag" in seen and partial.exists() else 0
        # Through the client's session, for its settings (a private CA in verify, a client certificate, proxies),
        # less its Authorization: the link carries its own credential (presigned or signed), the API key stays here.
        headers: dict[str, str | None] = {"Authorization": None}
        if have:
            headers.update({"Range": f"bytes={have}-", "If-Match": seen["etag"]})
        with self.client.http.get(url, stream=True, timeout=self.client.timeout, headers=headers) as response:
            if have and response.status_code in (412, 416):
                seen.clear()
                partial.unlink(missing_ok=True)
                raise requests.exceptions.ChunkedEncodingError(f"the result changed since its first {have} bytes")
            if response.status_code >= 400:
                raise _error(response)
            resumed = have and response.status_code == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                seen.clear()
                partial.unlink(missing_ok=True)
                raise requests.exceptions.ChunkedEncodingError("the result link answered another range")
            etag = response.headers.get("ETag")
            if etag and not etag.startswith("W/"):  # only a strong one says the bytes are the same
                seen["etag"] = etag
            else:
                seen.clear()
            with open(partial, "ab" if resumed else "wb") as out:
                for chunk in response.iter_content(64 * 1024):  # a cut loses at most this much
                    out.write(chunk)
        written = partial.stat().st_size
        if size is not None and written != size:  # a body ended by a closed connection: no Content-Length told
            if written > size:
                seen.clear()
            raise requests.exceptions.ChunkedEncodingError(f"the result link gave {written} of its {size} bytes")


class Models:
    def __init__(self, client: Client):
        self.client = client

    def list(self) -> list[Model]:
        return [Model.from_json(m) for m in _body(self.client.request("GET", "/v1/models"))["data"]]


class _Bytes:
    """In-memory upload that can be re-sent from its start on a retry."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def seek(self, position: int) -> None:
        self.position = position

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        chunk, self.position = self.data[self.position:end], min(end, len(self.data))
        return chunk
