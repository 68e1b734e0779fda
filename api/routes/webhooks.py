"""``/v1/webhooks/secret``: the secret a caller's receivers verify its webhook messages with."""

from __future__ import annotations

from flask import Blueprint, Response
from pydantic import BaseModel

from api.auth import current_tenant
from api.openapi import operation
from api.services import services
from shared.webhooks import signing_secret

blueprint = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


class WebhookSecret(BaseModel):
    tenant: str
    secret: str


@blueprint.get("/secret")
@operation("The whsec_ secret that verifies this tenant's webhook messages (each tenant has its own)",
           {200: ("The tenant and its secret", WebhookSecret)}, tag="webhooks")
def webhook_secret():
    tenant = current_tenant().name
    body = WebhookSecret(tenant=tenant, secret=signing_secret(services().settings, tenant))
    return Response(body.model_dump_json(), mimetype="application/json", headers={"Cache-Control": "no-store"})
