"""How a job looks in JSON (the same body for GET, list items and, later, webhooks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import url_for

from api.schemas import ImageInfo, JobError, JobLinks, JobOut
from api.services import Services
from shared.limits import OUTPUT_FORMATS
from shared.models import Job
from shared.signing import signed_query
from shared.states import JobStatus


def result_link(svc: Services, job: Job) -> tuple[str, datetime] | None:
    """A direct, expiring URL for a succeeded job's result: presigned S3 or a signed API link."""
    if job.status != JobStatus.SUCCEEDED.value or not job.output_key:
        return None
    ttl = svc.settings.result_url_ttl
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    ext = job.output_key.rsplit(".", 1)[-1]
    url = svc.storage.presigned_url(job.output_key, ttl, f"{job.id}.{ext}", OUTPUT_FORMATS[job.output_format])
    if url is None:
        url = _external(svc, "files.download", key=job.output_key, **signed_query(svc.settings.secret_key,
                                                                                   job.output_key, ttl))
    return url, expires


def _external(svc: Services, endpoint: str, **values) -> str:
    base = svc.settings.public_url.rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def job_out(svc: Services, job: Job, with_result_url: bool = True) -> JobOut:
    link = result_link(svc, job) if with_result_url else None
    succeeded = job.status == JobStatus.SUCCEEDED.value
    return JobOut(
        id=job.id, status=job.status, progress=round(job.progress, 4), model=job.model, scale=job.scale,
        output_format=job.output_format, quality=job.quality, webhook_url=job.webhook_url, attempts=job.attempts,
        created_at=job.created_at, updated_at=job.updated_at, started_at=job.started_at, finished_at=job.finished_at,
        input=ImageInfo(width=job.input_width, height=job.input_height, bytes=job.input_bytes,
                        format=job.input_format, filename=job.input_filename),
        output=ImageInfo(width=job.output_width or job.input_width * job.scale,
                         height=job.output_height or job.input_height * job.scale,
                         bytes=job.output_bytes, format=job.output_format),
        result_url=link[0] if link else None,
        result_url_expires_at=link[1] if link else None,
        error=JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None,
        timings=job.timings,
        links=JobLinks(self=url_for("jobs.get_job", job_id=job.id),
                       result=url_for("jobs.get_result", job_id=job.id) if succeeded else None),
    )
