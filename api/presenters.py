"""Rendering jobs for HTTP responses (the body itself is defined in ``shared.job_view``)."""

from __future__ import annotations

from flask import request

from api.services import Services
from shared.job_view import JobOut, job_view
from shared.models import Job


def base_url(svc: Services) -> str:
    """Where clients reach the API: ``UPSCALER_PUBLIC_URL`` (required in production, so a forged Host header
    never ends up in a link), else, in development on one machine, the host of this request."""
    return svc.settings.public_url or request.host_url


def job_out(svc: Services, job: Job, with_result_url: bool = True) -> JobOut:
    return job_view(job, svc.storage, svc.settings, base_url(svc), with_result_url)
