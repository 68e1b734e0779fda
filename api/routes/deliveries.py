"""``/v1/jobs/<id>/deliveries``: the webhook messages of a job, their attempts, and redelivery."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, request
from pydantic import BaseModel

from api.errors import ApiError
from api.openapi import operation
from api.request_values import one_each
from api.routes.jobs import load_job
from api.schemas import Problem, RedeliverQuery
from api.services import services
from shared import deliveries
from shared.db import unit_of_work
from shared.models import WebhookDelivery
from shared.queue import publish_deliveries

blueprint = Blueprint("deliveries", __name__, url_prefix="/v1/jobs/<job_id>/deliveries")


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str
    event: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


def _out(delivery: WebhookDelivery, attempts) -> DeliveryOut:
    return DeliveryOut(id=delivery.id, event=delivery.event, url=delivery.url, status=delivery.status,
                       attempts=delivery.attempts, next_attempt_at=delivery.next_attempt_at,
                       created_at=delivery.created_at,
                       attempt_log=[AttemptOut(attempted_at=a.attempted_at, status_code=a.status_code,
                                               latency_ms=a.latency_ms, error=a.error) for a in attempts])


@blueprint.get("")
@operation("List a job's webhook messages and every delivery attempt",
           {200: ("Messages with their attempts", DeliveryList), 404: ("No such job", Problem)}, tag="webhooks")
def list_deliveries(job_id: str):
    svc = services()
    load_job(svc, job_id)
    with svc.sessions() as session:
        data = [_out(d, attempts) for d, attempts in deliveries.for_job(session, job_id)]
    return Response(DeliveryList(data=data).model_dump_json(), mimetype="application/json")


@blueprint.post("/redeliver")
@operation("Send a webhook message again (the latest, or ?delivery_id=msg_...) with a fresh retry budget",
           {202: ("Queued for delivery", DeliveryOut), 404: ("No such job or message", Problem),
            409: ("An attempt at the message is being made", Problem)}, tag="webhooks",
           query=RedeliverQuery, status_headers={409: {"Retry-After": "Seconds to wait before sending it again"}})
def redeliver(job_id: str):
    svc = services()
    load_job(svc, job_id)
    wanted = RedeliverQuery.model_validate(one_each(request.args)).delivery_id
    with unit_of_work(svc.sessions) as session:
        found = [(d, attempts) for d, attempts in deliveries.for_job(session, job_id) if wanted in (None, d.id)]
        if not found:
            raise ApiError("not_found", "this job has no such webhook message")
        delivery, attempts = found[-1]
        try:
            deliveries.reopen(session, delivery)
        except deliveries.InFlight:
            raise ApiError("delivery_in_progress", "an attempt at this message is being made now; see its outcome "
                                                   "in GET .../deliveries, and send it again after",
                           headers={"Retry-After": "5"}) from None
        body = _out(delivery, attempts)
    publish_deliveries(svc.celery, [delivery.id])
    return Response(body.model_dump_json(), status=202, mimetype="application/json")
