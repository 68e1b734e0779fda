"""``/v1/openapi.json``: the API's own description, generated from the code."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from api.openapi import build_spec, operation

blueprint = Blueprint("meta", __name__)


@blueprint.get("/v1/openapi.json")
@operation("This OpenAPI document", {200: ("OpenAPI 3.1 document", None)}, tag="meta",
           content_type="application/json")
def openapi_json():
    return jsonify(build_spec(current_app))
