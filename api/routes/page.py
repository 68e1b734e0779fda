"""``/``: a small web page to upscale an image by hand (it uses the public API, nothing else).

Its script and style are files of their own, so the page runs under a strict Content-Security-Policy
(no inline script), set by ``api.security``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

from api.errors import ApiError
from api.openapi import operation
from api.schemas import Problem

blueprint = Blueprint("page", __name__)
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"app.js", "tiff.js", "app.css"}


@blueprint.get("/")
@operation("A web page to upscale an image by hand", {200: ("HTML", None)}, tag="meta", content_type="text/html")
def index():
    return send_from_directory(STATIC, "index.html", max_age=300)


@blueprint.get("/assets/<name>")
@operation("The web page's script and style", {200: ("The file", None), 404: ("No such asset", Problem)}, tag="meta",
           content_type=("text/css", "text/javascript"))
def asset(name: str):
    if name not in ASSETS:
        raise ApiError("not_found", "no such asset")
    return send_from_directory(STATIC, name, max_age=300)
