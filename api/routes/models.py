"""``/v1/models``: which upscalers a job may name."""

from __future__ import annotations

from flask import Blueprint, Response

from api.openapi import operation
from api.schemas import ModelList, ModelOut
from api.services import services

blueprint = Blueprint("models", __name__, url_prefix="/v1/models")


@blueprint.get("")
@operation("List models", {200: ("Available models", ModelList)}, tag="models")
def list_models():
    svc = services()
    data = [ModelOut(**info.public(), default=name == svc.settings.default_model) for name, info in
            sorted(svc.catalog.items())]
    return Response(ModelList(data=data).model_dump_json(), mimetype="application/json")
