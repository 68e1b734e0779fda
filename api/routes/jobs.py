"""``/v1/jobs``: submit, poll, list, cancel and fetch results."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, request, url_for
from pydantic import ValidationError

from api import quotas, submission
from api.auth import current_tenant, require_key_still_valid
from api.downloads import send_download
from api.errors import ApiError
from api.openapi import DOWNLOAD_ANSWERS, DOWNLOAD_HEADERS, operation
from api.presenters import job_out
from api.request_values import one_each
from api.routes.metrics import untimed
from api.schemas import JobCreateForm, JobListQuery, JobOut, JobPage, Problem
from api.services import Services, services
from shared import jobs, quota, transitions
from shared.db import unit_of_work
from shared.job_view import result_filename
from shared.limits import OUTPUT_FORMATS
from shared.metrics import JOBS_SUBMITTED
from shared.models import Job, could_be_job_id
from shared.states import TERMINAL, JobStatus
from shared.storage import StorageError

log = logging.getLogger(__name__)
blueprint = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
RETRY_AFTER_SECONDS = 2


def _json(svc: Services, job: Job, status: int = 200, with_result_url: bool = True,
          queue_position: int | None = None) -> Response:
    body = job_out(svc, job, with_result_url)
    body.queue_position = queue_position
    return Response(body.model_dump_json(), status=status, mimetype="application/json")


@blueprint.post("")
@operation(
    "Submit an upscale job",
    {200: ("The finished job: finished within Prefer: wait=N, or the ended job an earlier request with the same "
           "Idempotency-Key created", JobOut),
     202: ("Accepted: the job is queued or running (a new one, or an earlier request's with the same "
           "Idempotency-Key). Poll the Location.", JobOut),
     400: ("Not multipart, or no image", Problem), 409: ("Idempotency-Key reused for another request", Problem),
     413: ("Upload too large", Problem), 415: ("Not a supported image", Problem),
     429: ("Rate limit, active-job limit or daily megapixel quota reached (Retry-After says when to retry)",
           Problem),
     422: ("Invalid parameter, image or output too large, unknown model, refused webhook URL", Problem),
     503: ("Database or storage unavailable", Problem)},
    form=JobCreateForm,
    status_headers={200: {"Location": "URL of the job",
                          "Preference-Applied": "wait=N when the job ended within Prefer: wait=N"},
                    202: {"Location": "URL of the job", "Retry-After": "Seconds to wait before polling"}},
    request_headers={"Idempotency-Key": "Same key + same request = the same job, for idempotency_ttl seconds",
                     "Prefer": "wait=N (N <= 60): answer 200 with the finished job if it ends within N seconds"},
)
def create_job():
    svc = services()
    key = submission.idempotency_key()
    wait = submission.requested_wait()
    parsed = submission.parse(svc)
    require_key_still_valid()  # the upload may have taken minutes: no new job, nor a replay's answer, for a key
    # revoked meanwhile (a replay of an ended job was answered with a freshly signed result link)
    job = _earlier(svc, key, parsed) or _accept(svc, key, parsed)
    if wait and not _ended(job) and svc.waiters.acquire(blocking=False):  # all waiting threads busy: answer now
        try:
            with untimed():
                job = submission.wait_for_end(svc, job.id, wait) or job
        finally:
            svc.waiters.release()
        require_key_still_valid()
        if _ended(job):
            response = _located(_json(svc, job), job.id)
            response.headers["Preference-Applied"] = f"wait={wait}"
            return response
    if _ended(job):  # a replay of a request whose job has ended
        return _located(_json(svc, job), job.id)
    with svc.sessions() as session:
        position = jobs.queue_position(session, job)
    response = _located(_json(svc, job, 202, with_result_url=False, queue_position=position), job.id)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _ended(job: Job) -> bool:
    return JobStatus(job.status) in TERMINAL


def _earlier(svc: Services, key: str | None, parsed: submission.Submission) -> Job | None:
    """The job an earlier request with this Idempotency-Key made (409 if it asked for something else)."""
    return submission.find_previous(svc, key, parsed.fingerprint) if key else None


def _accept(svc: Services, key: str | None, parsed: submission.Submission) -> Job:
    """Charge, store and enqueue a new job. A request whose Idempotency-Key is in flight (its first request is
    being charged and stored) waits for that one's job (``submission.first_of_its_key``): a retry sent meanwhile
    got 429 for a job that existed a moment later, or was charged too. A limit refusing it is still answered with
    the job of a concurrent request with the same key, if one made it (Redis unreachable: no mark)."""
    with submission.first_of_its_key(svc, key) as first:
        # a retry waits on a thread of the waiters' share (Prefer: wait's), none free: it goes on as a new request
        # (the database's unique key still makes one job of the two)
        if not first and svc.waiters.acquire(blocking=False):
            try:
                with untimed():
                    earlier = submission.wait_for_first(svc, key, parsed)
            finally:
                svc.waiters.release()
            require_key_still_valid()  # that wait may have taken seconds
            if earlier:
                return earlier
        return _charge_and_store(svc, key, parsed)


def _charge_and_store(svc: Services, key: str | None, parsed: submission.Submission) -> Job:
    tenant = current_tenant()
    cost = parsed.output_megapixels
    try:
        quotas.precheck_active(svc, tenant)
        charged_at = quotas.reserve_megapixels(svc.redis, tenant, svc.settings, cost)
    except ApiError:
        if earlier := _earlier(svc, key, parsed):
            return earlier
        raise

    def refund() -> None:  # the request made no job of its own: the charge goes back, if one was made
        if charged_at:
            quota.refund(svc.settings, tenant.name, (cost, charged_at))

    try:
        job, created = submission.create(svc, parsed, key, charged_at)
    except submission.OutcomeUnknown:  # a job that may exist keeps its charge: its own ending refunds it
        raise
    except ApiError:
        refund()
        if earlier := _earlier(svc, key, parsed):
            return earlier
        raise
    except Exception:
        refund()
        raise
    if not created:  # a concurrent request with this Idempotency-Key won the race: its job, charged once
        refund()
        return job
    # label by the network scale that will run (bounded: 1, 2, 3, 4, 8), never by a free-form size
    JOBS_SUBMITTED.labels(job.model, str(parsed.plan.network_scale) if parsed.plan else "pending").inc()
    return job


def _located(response: Response, job_id: str) -> Response:
    response.headers["Location"] = url_for("jobs.get_job", job_id=job_id)
    return response


def load_job(svc: Services, job_id: str) -> Job:
    """The caller's job; another tenant's job is "not found" exactly like a missing one (no existence leak)."""
    with svc.sessions() as session:
        job = session.get(Job, job_id) if could_be_job_id(job_id) else None
    if job is None or job.tenant != current_tenant().name:
        raise ApiError("not_found", f"no job {job_id!r}")
    return job


@blueprint.get("/<job_id>")
@operation("Get a job", {200: ("The job", JobOut), 404: ("No such job", Problem)},
           headers={"Retry-After": "While the job is queued or running: seconds to wait before polling again"})
def get_job(job_id: str):
    svc = services()
    job = load_job(svc, job_id)
    with svc.sessions() as session:
        position = jobs.queue_position(session, job)
    response = _json(svc, job, queue_position=position)
    if job.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@blueprint.get("")
@operation("List jobs, newest first (cursor pagination)",
           {200: ("A page of jobs", JobPage), 400: ("Bad cursor", Problem), 422: ("Invalid parameter", Problem)},
           query=JobListQuery)
def list_jobs():
    svc = services()
    try:
        query = JobListQuery.model_validate(one_each(request.args))
    except ValidationError as exc:
        raise submission.validation_error(exc) from exc
    with svc.sessions() as session:
        try:
            page, next_cursor = jobs.list_jobs(session, current_tenant().name, query.status, query.limit,
                                               query.cursor)
        except jobs.InvalidCursor as exc:
            raise ApiError("invalid_cursor", "the cursor is not one this API returned") from exc
    body = JobPage(data=[job_out(svc, j) for j in page], next_cursor=next_cursor)
    return Response(body.model_dump_json(), mimetype="application/json")


@blueprint.post("/<job_id>/cancel")
@operation("Cancel a job: a queued job never runs, a running one stops at its next tile",
           {200: ("The canceled job", JobOut), 404: ("No such job", Problem),
            409: ("The job already succeeded or failed", Problem)})
def cancel_job(job_id: str):
    svc = services()
    load_job(svc, job_id)
    canceled = transitions.cancel_job(svc, job_id)
    job = canceled or load_job(svc, job_id)
    if job.status != JobStatus.CANCELED.value:
        raise ApiError("not_cancelable", f"the job has already {job.status}", job_status=job.status)
    return _json(svc, job)


@blueprint.delete("/<job_id>")
@operation("Delete a job's images now (its input and result); the job's record stays, with expired_at set",
           {200: ("The job, its images deleted (again: the same answer)", JobOut), 404: ("No such job", Problem),
            409: ("The job is queued or running: cancel it first", Problem),
            503: ("Object storage or the database unavailable: nothing was marked deleted; retry", Problem)})
def delete_job(job_id: str):
    """What retention does after ``UPSCALER_RETENTION_SECONDS``, at its owner's word: a studio's client photos or a
    shop's unreleased products need not wait out the deployment's retention in its storage."""
    svc = services()
    job = load_job(svc, job_id)
    if not _ended(job):
        raise ApiError("job_not_finished", f"the job is {job.status}; cancel it (POST /v1/jobs/{job_id}/cancel), "
                                           "then delete it", job_status=job.status)
    if job.expired_at is None:
        try:  # the objects first, the mark after: a deletion cut short is marked nothing and can be sent again
            for key in jobs.stored_keys(job):
                with svc.storage_turn():
                    svc.storage.delete(key)
        except StorageError as exc:
            log.error("storage unavailable deleting a job's images: %s", exc)
            raise ApiError("service_unavailable", "object storage is unavailable; retry later",
                           headers={"Retry-After": "10"}) from exc
        with unit_of_work(svc.sessions) as session:
            jobs.mark_expired(session, job.id)
        job = load_job(svc, job_id)
    return _json(svc, job)


@blueprint.get("/<job_id>/result")
@operation("Download the result",
           {200: ("The image (local storage)", None), **DOWNLOAD_ANSWERS,
            303: ("Redirect to a presigned URL (S3)", None),
            404: ("No such job", Problem), 409: ("The job has not succeeded", Problem),
            410: ("Deleted: the retention period, or a DELETE of the job", Problem),
            503: ("Object storage unavailable or too slow to answer", Problem)},
           status_headers={**DOWNLOAD_HEADERS, 303: {"Location": "A presigned URL of the result, valid "
                                                                 "UPSCALER_RESULT_URL_TTL seconds"}},
           content_type="image/*")
def get_result(job_id: str):
    svc = services()
    job = load_job(svc, job_id)
    if job.status != JobStatus.SUCCEEDED.value or not job.output_key:
        raise ApiError("result_not_ready", f"the job is {job.status}; a result exists only once it has succeeded",
                       job_status=job.status)
    if job.expired_at:
        raise ApiError("result_expired", f"the result was deleted on {job.expired_at.isoformat()} (the retention "
                                         "period, or a DELETE of the job)")
    filename = result_filename(job)
    try:  # deleted under the job (a retention pass cut short): a 500 once, then S3's own error page behind a 303
        with svc.storage_turn():
            stored = svc.storage.exists(job.output_key)
    except StorageError as exc:
        log.error("storage unavailable reading a result: %s", exc)
        raise ApiError("service_unavailable", "object storage is unavailable; retry later",
                       headers={"Retry-After": "10"}) from exc
    if not stored:
        raise ApiError("not_found", "the result is no longer stored")
    served = svc.storage.served_path(job.output_key)
    if served is not None:
        return send_download(served, mimetype=OUTPUT_FORMATS[job.output_format],
                             download_name=filename)  # as S3's link and /v1/files
    try:
        url = svc.storage.presigned_url(job.output_key, svc.settings.result_url_ttl, filename,
                                        OUTPUT_FORMATS[job.output_format])
    except StorageError as exc:  # no credentials to sign with, for now
        log.error("cannot sign a link to a result: %s", exc)
        raise ApiError("service_unavailable", "object storage cannot sign a link now; retry later",
                       headers={"Retry-After": "10"}) from exc
    return redirect(url, code=303)
