"""``/``: a small web page to upscale an image by hand (it uses the public API, nothing else)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

from api.openapi import operation

blueprint = Blueprint("page", __name__)
STATIC = Path(__file__).resolve().parent.parent / "static"


@blueprint.get("/")
@operation("A web page to upscale an image by hand", {200: ("HTML", None)}, tag="meta", content_type="text/html")
def index():
    return send_from_directory(STATIC, "index.html", max_age=300)
