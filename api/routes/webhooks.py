"""``/v1/webhooks/secret``: the secret a caller's receivers verify its webhook messages with, and its rotation."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from api.auth import current_tenant
from api.errors import ApiError
from api.openapi import operation
from api.schemas import Problem
from api.services import services
from shared.db import unit_of_work
from shared.webhooks import TenantSecrets, rotate_secret, tenant_secrets

blueprint = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


# a secret is not for a cache to keep (a proxy's, the browser's)
NO_STORE = {"Cache-Control": "no-store"}


class WebhookSecret(BaseModel):
    tenant: str
    secret: str
    previous_secret_valid_until: datetime | None = Field(
        None, description="After a rotation: until when messages are also signed with the previous secret "
                          "(a receiver still holding it keeps verifying them); null when only `secret` signs.")


def _answer(tenant: str, secrets: TenantSecrets, status: int = 200) -> Response:
    body = WebhookSecret(tenant=tenant, secret=secrets.current, previous_secret_valid_until=secrets.previous_until)
    return Response(body.model_dump_json(), status=status, mimetype="application/json",
                    headers=NO_STORE)


@blueprint.get("/secret")
@operation("The whsec_ secret that verifies this tenant's webhook messages (each tenant has its own)",
           {200: ("The tenant and its secret", WebhookSecret)}, tag="webhooks", headers=NO_STORE)
def webhook_secret():
    svc, tenant = services(), current_tenant().name
    with svc.sessions() as session:
        return _answer(tenant, tenant_secrets(session, svc.settings, tenant))


@blueprint.post("/secret/rotate")
@operation("A new whsec_ secret for this tenant; the previous one goes on signing for 24 hours (both signatures "
           "in each message), one before that stops at once",
           {201: ("The new secret", WebhookSecret), 409: ("A tenant with no key of its own", Problem)}, tag="webhooks",
           status_headers={201: NO_STORE})
def rotate_webhook_secret():
    svc, tenant = services(), current_tenant().name
    with unit_of_work(svc.sessions) as session:
        rotated = rotate_secret(session, svc.settings, tenant)
    if rotated is None:
        raise ApiError("secret_not_rotatable", "the open development API's tenant and the bootstrap keys' "
                                               "(UPSCALER_API_KEYS) have no key of their own to rotate it on: change "
                                               "UPSCALER_WEBHOOK_SECRET, or use a key from 'upscaler keys create'")
    return _answer(tenant, rotated, 201)
