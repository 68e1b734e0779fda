"""``/v1/jobs``: submit, poll, list and fetch results."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, request, send_file, url_for
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.errors import ApiError
from api.openapi import operation
from api.presenters import job_out
from api.schemas import JobCreateForm, JobListQuery, JobOut, JobPage, Problem
from api.services import Services, services
from api.uploads import CONTENT_TYPES, read_upload
from shared import jobs
from shared.db import unit_of_work
from shared.limits import EXTENSIONS, OUTPUT_FORMATS, check_output
from shared.models import Job, new_job_id, utcnow
from shared.queue import enqueue_job
from shared.states import JobStatus
from shared.storage import LocalStorage, StorageError, new_key

log = logging.getLogger(__name__)
blueprint = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
RETRY_AFTER_SECONDS = 2


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "request"
    return ApiError("invalid_parameter", f"{field}: {first['msg']}", field=field)


@blueprint.post("")
@operation(
    "Submit an upscale job",
    {202: ("Accepted: the job is queued. Poll the Location.", JobOut),
     400: ("No image sent", Problem), 413: ("Upload too large", Problem), 415: ("Not a supported image", Problem),
     422: ("Invalid parameter, image or output too large, unknown model", Problem),
     503: ("Database or storage unavailable", Problem)},
    form=JobCreateForm,
    headers={"Location": "URL of the job", "Retry-After": "Seconds to wait before polling"},
)
def create_job():
    svc = services()
    if request.mimetype != "multipart/form-data":
        raise ApiError("bad_request", f"send multipart/form-data (got {request.mimetype or 'no body'}), with the "
                                      "image in a file field named 'image'")
    try:
        form = JobCreateForm.model_validate(request.form.to_dict())
    except ValidationError as exc:
        raise validation_error(exc) from exc
    model = form.model or svc.settings.default_model
    if model not in svc.catalog:
        raise ApiError("unknown_model", f"no model named {model!r}; see GET /v1/models",
                       available=sorted(svc.catalog))
    if form.scale not in svc.catalog[model].scales:
        raise ApiError("invalid_parameter", f"model {model!r} supports scales {list(svc.catalog[model].scales)}",
                       field="scale")
    upload = read_upload(request.files.get("image"), svc.settings.max_input_pixels)
    violation = check_output(upload.width, upload.height, form.scale, form.format, svc.settings.max_output_pixels)
    if violation:
        raise ApiError(violation.code, violation.message)

    job_id = new_job_id()
    input_key = new_key("inputs", job_id, EXTENSIONS.get(upload.format, upload.format))
    _store_input(svc, input_key, upload.data, CONTENT_TYPES[upload.format])
    job = Job(id=job_id, status=JobStatus.QUEUED.value, scale=form.scale, model=model, output_format=form.format,
              quality=form.quality, webhook_url=str(form.webhook_url) if form.webhook_url else None,
              input_key=input_key, input_format=upload.format, input_filename=upload.filename,
              input_bytes=len(upload.data), input_width=upload.width, input_height=upload.height,
              progress=0.0, attempts=0, enqueued_at=utcnow())
    _insert_job(svc, job)
    _enqueue(svc, job_id)
    body = job_out(svc, job, with_result_url=False)
    response = Response(body.model_dump_json(), status=202, mimetype="application/json")
    response.headers["Location"] = url_for("jobs.get_job", job_id=job_id)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _store_input(svc: Services, key: str, data: bytes, content_type: str) -> None:
    try:
        svc.storage.put_bytes(key, data, content_type)
    except StorageError as exc:
        log.error("storage unavailable at submit: %s", exc)
        raise ApiError("service_unavailable", "object storage is unavailable; nothing was stored, retry later",
                       headers={"Retry-After": "10"}) from exc


def _insert_job(svc: Services, job: Job) -> None:
    try:
        with unit_of_work(svc.sessions) as session:
            session.add(job)
    except SQLAlchemyError as exc:
        log.error("database unavailable at submit: %s", exc)
        try:  # no orphan object without a row
            svc.storage.delete(job.input_key)
        except StorageError:
            log.exception("could not remove orphan input %s", job.input_key)
        raise ApiError("service_unavailable", "the database is unavailable; nothing was stored, retry later",
                       headers={"Retry-After": "10"}) from exc


def _enqueue(svc: Services, job_id: str) -> None:
    """Publish after commit. The row was stored with ``enqueued_at`` set (saving a second commit on the
    hot path); if Redis is down it is cleared so the sweeper enqueues the job as soon as it can.
    """
    try:
        enqueue_job(svc.celery, job_id)
    except Exception:
        log.warning("broker unavailable: job %s accepted, the sweeper will enqueue it", job_id)
        try:
            with unit_of_work(svc.sessions) as session:
                jobs.clear_enqueued(session, job_id)
        except SQLAlchemyError:
            log.exception("could not clear enqueue time of job %s; the sweeper finds it once stale", job_id)


def _load(svc: Services, job_id: str) -> Job:
    with svc.sessions() as session:
        job = session.get(Job, job_id) if len(job_id) <= 64 else None
    if job is None:
        raise ApiError("not_found", f"no job {job_id!r}")
    return job


@blueprint.get("/<job_id>")
@operation("Get a job", {200: ("The job", JobOut), 404: ("No such job", Problem)})
def get_job(job_id: str):
    svc = services()
    job = _load(svc, job_id)
    response = Response(job_out(svc, job).model_dump_json(), mimetype="application/json")
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
        query = JobListQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise validation_error(exc) from exc
    with svc.sessions() as session:
        try:
            page, next_cursor = jobs.list_jobs(session, query.status, query.limit, query.cursor)
        except jobs.InvalidCursor as exc:
            raise ApiError("invalid_cursor", "the cursor is not one this API returned") from exc
    body = JobPage(data=[job_out(svc, j) for j in page], next_cursor=next_cursor)
    return Response(body.model_dump_json(), mimetype="application/json")


@blueprint.get("/<job_id>/result")
@operation("Download the result",
           {200: ("The image (local storage)", None), 303: ("Redirect to a presigned URL (S3)", None),
            404: ("No such job", Problem), 409: ("The job has not succeeded", Problem)},
           content_type="image/*")
def get_result(job_id: str):
    svc = services()
    job = _load(svc, job_id)
    if job.status != JobStatus.SUCCEEDED.value or not job.output_key:
        raise ApiError("result_not_ready", f"the job is {job.status}; a result exists only once it has succeeded",
                       job_status=job.status)
    ext = job.output_key.rsplit(".", 1)[-1]
    filename = f"{job.id}.{ext}"
    if isinstance(svc.storage, LocalStorage):
        return send_file(svc.storage.path_for(job.output_key), mimetype=OUTPUT_FORMATS[job.output_format],
                         download_name=filename, max_age=0)
    url = svc.storage.presigned_url(job.output_key, svc.settings.result_url_ttl, filename,
                                    OUTPUT_FORMATS[job.output_format])
    return redirect(url, code=303)

