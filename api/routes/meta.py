"""``/v1/openapi.json``: the API's own description, generated from the code."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from api.openapi import build_spec, operation

blueprint = Blueprint("meta", __name__)


@blueprint.get("/v1/openapi.json")
@operation("This OpenAPI document", {200: ("OpenAPI 3.1 document", None)}, tag="meta",
           content_type="application/json")
def openapi_json():
    # built once per process: the routes do not change after start, and building it (every model's JSON schema)
    # took 50 ms of a core per anonymous request, about 20 a second filling one
    cached = current_app.extensions.get("openapi_json")
    if cached is None:
        cached = current_app.extensions["openapi_json"] = json.dumps(build_spec(current_app))
    return Response(cached, mimetype="application/json", headers={"Cache-Control": "public, max-age=300"})
