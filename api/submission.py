"""The submit path: validate, store the input, insert the job (with its idempotency key), enqueue.

Order matters for "nothing half-written": the input object is stored first; if the row insert fails
the object is deleted before answering 503; the task is published only after the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import redis
from flask import request
from pydantic import ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from api import quotas
from api.auth import current_tenant, require_key_still_valid
from api.errors import ApiError
from api.request_values import one_each
from api.schemas import JobCreateForm
from api.services import Services
from api.uploads import Upload, chosen_file, read_upload
from shared import jobs
from shared.db import unit_of_work
from shared.events import DEFAULT_EVENTS
from shared.formats import CONTENT_TYPES
from shared.limits import EXTENSIONS, MAX_WAIT_SECONDS, check_job, check_requested
from shared.models import IdempotencyKey, Job, new_job_id, utcnow
from shared.queue import PRIORITY_LEVELS, enqueue_job
from shared.sizing import SizeError, SizePlan
from shared.sizing import plan as plan_size
from shared.states import TERMINAL, JobStatus
from shared.storage import INPUTS, StorageError, new_key
from shared.webhooks import refused_destination

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    form: JobCreateForm
    model: str
    upload: Upload | None  # None when the image comes from ``form.image_url`` (the worker fetches it)

    @cached_property
    def fingerprint(self) -> str:
        """What makes two requests "the same" for Idempotency-Key: every field and the image bytes
        (hashed once per request, however often it is compared)."""
        # the events as the job keeps them: another order, or the default list spelled out, is the same request
        events = self.form.event_list()
        fields = self.form.model_dump(mode="json") | {"model": self.model, "webhook_events": (
            None if events is None or tuple(events) == tuple(sorted(DEFAULT_EVENTS)) else ",".join(events))}
        image = hashlib.sha256(self.upload.data).hexdigest() if self.upload else ""
        return hashlib.sha256((json.dumps(fields, sort_keys=True) + image).encode()).hexdigest()

    @cached_property
    def plan(self) -> SizePlan | None:
        """The output size, known at submit for an upload (an image_url's only once fetched)."""
        return plan_size(self.upload.width, self.upload.height, self.form.size) if self.upload else None

    @property
    def output_megapixels(self) -> float:
        """The job's cost: its output megapixels (0 until an image_url is fetched)."""
        return self.plan.megapixels if self.plan else 0.0


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "request"
    if first["type"] == "extra_forbidden":  # a typo, or a name read back from a job (output_format): not ignored
        return ApiError("invalid_parameter", f"{field}: no such field here; the API reference (/docs) lists them",
                        field=field)
    return ApiError("invalid_parameter", f"{field}: {first['msg']}", field=field)


def parse(svc: Services) -> Submission:
    """Validate the whole request; raise the matching ``ApiError`` at the first problem."""
    if request.mimetype != "multipart/form-data":
        raise ApiError("bad_request", f"send multipart/form-data (got {request.mimetype or 'no body'}), with the "
                                      "image in a file field named 'image'")
    if request.args:  # read from nowhere, they were ignored: ?scale=2 got, and was charged for, the default x4
        name = next(iter(request.args))
        raise ApiError("invalid_parameter", f"{name}: POST /v1/jobs takes its fields in the multipart body, not in "
                                            "the query string", field=name)
    if None in request.form or None in request.files:  # was "None: Keys should be strings", field "None"
        raise ApiError("bad_request", "a part of the form has no name (its Content-Disposition names none); name "
                                      "each part, the image 'image'")
    if "image" in request.form:
        raise ApiError("invalid_parameter", "image: send the image as a file part (with a filename), not as a text "
                                            "field", field="image")
    for name in request.files:  # a file part of another name was ignored, as unknown fields were
        if name != "image":
            raise ApiError("invalid_parameter", f"{name}: no such file field; the image goes in 'image'", field=name)
    one_each(request.files)  # a second image was ignored: one job, made of the first, and no word of the other
    try:
        form = JobCreateForm.model_validate(one_each(request.form, repeatable=("webhook_events",)))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    model = form.model or svc.settings.default_model
    if model not in svc.catalog:
        raise ApiError("unknown_model", f"no model named {model!r}; see GET /v1/models",
                       available=sorted(svc.catalog))
    if form.denoise_value is not None and not svc.catalog[model].accepts_denoise:
        raise ApiError("invalid_parameter", f"model {model!r} takes no denoise strength; use 'auto' or a model whose "
                                            "denoise is true in GET /v1/models", field="denoise")
    if form.webhook_events and not form.webhook_url:  # nothing would be sent: said, not silently dropped
        raise ApiError("invalid_parameter", "webhook_events needs a webhook_url to send them to",
                       field="webhook_events")
    if form.webhook_url:
        reason = _refusal(svc, str(form.webhook_url))
        if reason:
            raise ApiError("webhook_url_refused", reason, field="webhook_url")
    if form.image_url:
        if chosen_file(request.files) is not None:
            raise ApiError("bad_request", "send either the 'image' file or an 'image_url', not both")
        violation = check_requested(form.size, form.format, svc.settings)  # the rest once the worker fetches it
        if violation:
            raise ApiError(violation.code, violation.message)
        reason = _refusal(svc, str(form.image_url))
        if reason:  # checked again, and pinned, when the worker fetches it
            raise ApiError("image_url_refused", reason, field="image_url")
        return Submission(form, model, None)
    if not request.form and not request.files and request.content_length:  # a body in which no part was found
        raise ApiError("missing_image", "the multipart body could not be read: no boundary, an unterminated part, or "
                                        "part headers that are not UTF-8 (a file name in another encoding)")
    submission = Submission(form, model, read_upload(chosen_file(request.files), svc.settings.max_input_pixels))
    try:
        planned = submission.plan
    except SizeError as exc:  # named after what the caller sent: a print size, a pixel size or a factor
        field = next((name for name in ("print_width", "print_height", "width", "height")
                      if getattr(form, name) is not None), "scale")
        raise ApiError("invalid_parameter", f"{field}: {exc}", field=field) from exc
    upload = submission.upload
    violation = check_job(planned, upload.width, upload.height, upload.alpha, form.format, svc.settings,
                          svc.catalog[model])
    if violation and violation.code == "unsupported_scale":  # a parameter the caller chose
        raise ApiError("invalid_parameter", violation.message, field="scale")
    if violation:
        raise ApiError(violation.code, violation.message)
    return submission


def _refusal(svc: Services, url: str) -> str | None:
    """Why a submitted URL is refused, or None. The lookup holds this request's thread: when as many submits as
    ``Services.lookups`` allow are already looking a host up, this one's host name is not looked up, as one that
    does not answer in time is not (the worker's check, before it connects, is the one that guards); everything
    else (scheme, credentials, port, an address literal, a metadata host) is checked all the same."""
    if not svc.lookups.acquire(blocking=False):
        return refused_destination(url, svc.settings.webhook_allow_private, resolve_seconds=0)
    try:
        return refused_destination(url, svc.settings.webhook_allow_private)
    finally:
        svc.lookups.release()


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key``, scoped to its tenant: stored as SHA-256(tenant, key), so one
    tenant's key can never find another tenant's job."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError("invalid_parameter", "Idempotency-Key must be 1..255 printable characters",
                       field="Idempotency-Key")
    return hashlib.sha256(f"{current_tenant().name}\n{key}".encode()).hexdigest()


# A request with an Idempotency-Key marks it in flight from its charge to its commit. A retry arriving meanwhile
# (a client that timed out on a slow upload) was charged, or refused by a limit the first had just used up (429 until
# midnight for a job that existed a moment later): it now waits for the first's job instead, this long at most.
IN_FLIGHT_SECONDS = 30.0


def _in_flight_marker(key: str | None) -> str:
    return f"upscaler:idempotency:{key}"


@contextlib.contextmanager
def first_of_its_key(svc: Services, key: str | None) -> Iterator[bool]:
    """Mark ``key`` in flight while the block runs; yields whether this request is its first (True without a key,
    or with Redis unreachable: the database's unique key still makes one job of two)."""
    marker = _in_flight_marker(key)
    try:
        first = key is None or bool(svc.redis.set(marker, "1", nx=True, ex=int(IN_FLIGHT_SECONDS) + 5))
    except redis.RedisError:
        key, first = None, True
    try:
        yield first
    finally:
        if key is not None and first:
            with contextlib.suppress(redis.RedisError):
                svc.redis.delete(marker)


def wait_for_first(svc: Services, key: str, submission: Submission, poll: float = 0.2) -> Job | None:
    """The job the in-flight first request with ``key`` makes, once it has (409 if that request was another);
    None if it ended without one, or did not end within ``IN_FLIGHT_SECONDS`` (then this one goes on as new)."""
    deadline = time.monotonic() + IN_FLIGHT_SECONDS
    while time.monotonic() < deadline:
        if job := find_previous(svc, key, submission.fingerprint):
            return job
        try:
            if not svc.redis.exists(_in_flight_marker(key)):
                return find_previous(svc, key, submission.fingerprint)
        except redis.RedisError:
            return None
        time.sleep(poll)
    return None


def find_previous(svc: Services, key: str, fingerprint: str) -> Job | None:
    """The job an earlier request with this key created; 409 if that request was a different one."""
    with svc.sessions() as session:
        record = session.get(IdempotencyKey, key)
        if record is None or record.created_at < utcnow() - timedelta(seconds=svc.settings.idempotency_ttl):
            return None
        if record.request_hash != fingerprint:
            raise ApiError("idempotency_conflict", "this Idempotency-Key was already used with a different request "
                                                   "(image or parameters)")
        return session.get(Job, record.job_id)


def create(svc: Services, submission: Submission, key: str | None, charged_at: datetime | None) -> tuple[Job, bool]:
    """Store and enqueue a new job within the tenant's active-job limit (429 past it); returns (job, created).
    ``created`` is False when a concurrent request with the same Idempotency-Key won the race (its job is
    returned). ``charged_at``: when its output megapixels were counted against the daily quota (None: they were
    not), recorded on the job so that a job that makes nothing gives them back."""
    form, upload, tenant = submission.form, submission.upload, current_tenant()
    job_id = new_job_id()
    if upload is None:  # image_url: the worker fetches the image into this key
        input_key, facts = new_key(INPUTS, "img"), {"input_url": str(form.image_url)}
    else:
        input_key = new_key(INPUTS, EXTENSIONS.get(upload.format, upload.format))
        facts = {"input_format": upload.format, "input_filename": upload.filename, "input_bytes": len(upload.data),
                 "input_width": upload.width, "input_height": upload.height,
                 "output_width": submission.plan.width, "output_height": submission.plan.height,
                 "charged_megapixels": submission.output_megapixels if charged_at else None, "charged_at": charged_at}
        try:
            with svc.storage_turn():
                svc.storage.put_bytes(input_key, upload.data, CONTENT_TYPES[upload.format])
        except StorageError as exc:
            log.error("storage unavailable at submit: %s", exc)
            raise ApiError("service_unavailable", "object storage is unavailable; nothing was stored, retry later",
                           headers={"Retry-After": "10"}) from exc
    size = form.size
    job = Job(id=job_id, tenant=tenant.name, status=JobStatus.QUEUED.value, scale=size.scale,
              target_width=size.width, target_height=size.height, fit=size.fit if size.width and size.height else None,
              model=submission.model, output_format=form.format, quality=form.quality, denoise=form.denoise_value,
              dpi=form.dpi,
              webhook_url=str(form.webhook_url) if form.webhook_url else None,
              webhook_events=form.event_list(), input_key=input_key, progress=0.0, attempts=0,
              enqueued_at=utcnow(), **facts)
    try:
        with unit_of_work(svc.sessions) as session:
            jobs.lock_tenant(session, tenant.name)
            if key is not None:
                expired = utcnow() - timedelta(seconds=svc.settings.idempotency_ttl)
                # only an expired record makes way: a live one (a concurrent request's) makes this insert conflict
                session.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key,
                                                             IdempotencyKey.created_at < expired))
            session.add(job)
            session.flush()  # written before counting: see jobs.lock_tenant
            # the key again, under the tenant's lock: one revoked during the input's upload (``keys revoke
            # --cancel-jobs`` takes the lock) stores no job that the revocation's cancel would miss
            require_key_still_valid(session)
            ahead = quotas.check_active(session, tenant, svc.settings)
            if key is not None:
                session.add(IdempotencyKey(key=key, request_hash=submission.fingerprint, job_id=job_id))
    except ApiError:
        _discard(svc, input_key)
        raise
    except IntegrityError:
        _discard(svc, input_key)
        previous = find_previous(svc, key, submission.fingerprint) if key else None
        if previous is None:
            raise
        return previous, False
    except SQLAlchemyError as exc:
        log.error("database unavailable at submit: %s", exc)
        stored = _stored(svc, job_id)
        if stored is None:  # the commit may have landed, its answer lost: what it names stays, the charge too
            raise OutcomeUnknown("service_unavailable", "the database stopped answering as the job was stored: it "
                                 "may exist; retry with the same Idempotency-Key (or look in GET /v1/jobs) rather "
                                 "than without one", headers={"Retry-After": "10"}) from exc
        if not stored:
            _discard(svc, input_key)
            raise ApiError("service_unavailable", "the database is unavailable; nothing was stored, retry later",
                           headers={"Retry-After": "10"}) from exc
        log.warning("job %s: stored, though its commit's answer was lost", job_id)
        ahead = None
    # the back level where its place was not counted: a message's priority orders only its first publish
    _enqueue(svc, job_id, jobs.priority_for(ahead) if ahead is not None else PRIORITY_LEVELS - 1)
    return job, True


class OutcomeUnknown(ApiError):
    """A submit whose commit may or may not have landed. Taken for a failure, the input was deleted and the charge
    refunded under a job that existed: it failed input_missing (its webhook sent for a job the client was told did
    not exist) and was refunded a second time, a free job's worth of quota."""


def _stored(svc: Services, job_id: str) -> bool | None:
    """Whether the job's row is there, asked again after a failed commit; None while the database cannot say."""
    try:
        with svc.sessions() as session:
            return session.get(Job, job_id) is not None
    except SQLAlchemyError:
        return None


def _discard(svc: Services, key: str) -> None:
    try:  # no orphan object without a row (a store too slow to answer now: the sweeper's orphan pass removes it)
        with svc.storage_turn():
            svc.storage.delete(key)
    except (StorageError, ApiError):
        log.exception("could not remove orphan input %s", key)


def _enqueue(svc: Services, job_id: str, priority: int) -> None:
    """Publish after commit. The row was stored with ``enqueued_at`` set (saving a second commit on the
    hot path); if Redis is down it is cleared so the sweeper enqueues the job as soon as it can.
    """
    try:
        enqueue_job(svc.celery, job_id, priority)
    except Exception:
        log.warning("broker unavailable: job %s accepted, the sweeper will enqueue it", job_id)
        try:
            with unit_of_work(svc.sessions) as session:
                jobs.clear_enqueued(session, job_id)
        except SQLAlchemyError:
            log.exception("could not clear enqueue time of job %s; the sweeper finds it once stale", job_id)


WAIT_DIGITS = 9  # a Prefer: wait longer than this many digits is far past MAX_WAIT_SECONDS: ignored


def requested_wait() -> int | None:
    """``Prefer: wait=N`` (RFC 7240), capped at 60 seconds; None when not asked, or not whole seconds: a
    preference the server cannot honour is ignored (RFC 7240, section 2), never a reason to refuse the job."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            seconds = value.strip().strip('"')
            # digits only, and few: int() of thousands of digits raised (a 500, after the whole upload)
            whole = seconds.isascii() and seconds.isdigit() and len(seconds) <= WAIT_DIGITS
            return max(0, min(int(seconds), MAX_WAIT_SECONDS)) if whole else None
    return None


def wait_for_end(svc: Services, job_id: str, seconds: int, poll: float = 0.25) -> Job | None:
    """Poll the database until the job ends or ``seconds`` pass; the finished job, or None."""
    deadline = time.monotonic() + seconds
    while True:
        with svc.sessions() as session:
            job = session.get(Job, job_id)
            if job.status in TERMINAL:
                return job
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
