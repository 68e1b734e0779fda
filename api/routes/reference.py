"""``/docs``: the interactive API reference (Swagger UI 5, its files from the ``flask-swagger-ui`` package: no CDN)
and ``/docs/errors``, the error table the problem details' ``type`` links point to (``/docs/errors#<code>``).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory

from api.errors import ApiError
from api.openapi import operation
from api.schemas import Problem
from shared.errors import API_ERRORS, JOB_ERRORS

blueprint = Blueprint("reference", __name__, url_prefix="/docs")
STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER_FILES = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}


def _swagger_dir() -> Path:
    """Swagger UI 5's dist files as the ``flask-swagger-ui`` package ships them (5.x reads OpenAPI 3.1)."""
    import flask_swagger_ui

    return Path(flask_swagger_ui.__file__).parent / "dist"


@blueprint.get("")
@operation("Interactive API reference (Swagger UI)", {200: ("HTML", None)}, tag="meta", content_type="text/html")
def docs_index():
    return send_from_directory(STATIC, "docs.html", max_age=300)


@blueprint.get("/")
@operation("The reference's address with a trailing slash: 308 to /docs", {308: ("To /docs", None)}, tag="meta",
           content_type="text/html")
def docs_slash():
    """``/docs/`` was a 404; it cannot serve the page itself, whose links are relative to ``/docs``. A relative
    ``Location`` keeps working under a path prefix (a proxy serving the API at ``/upscaler/``)."""
    return redirect("../docs", 308)


@blueprint.get("/assets/<name>")
@operation("Swagger UI's files", {200: ("The file", None), 404: ("No such file", Problem)}, tag="meta",
           content_type=("text/css", "text/javascript", "image/png"))
def docs_asset(name: str):
    if name == "docs.js":
        return send_from_directory(STATIC, name, max_age=300)
    if name not in SWAGGER_FILES:
        raise ApiError("not_found", "no such file")
    return send_from_directory(_swagger_dir(), name, max_age=86400)


@blueprint.get("/errors")
@operation("The error codes (problem details' type links land here)", {200: ("HTML", None)}, tag="meta",
           content_type="text/html")
def docs_errors():
    def rows(table, http: bool) -> str:
        return "".join(f'<tr id="{escape(e.code)}"><td><code>{escape(e.code)}</code></td>'
                       + (f"<td>{e.status}</td>" if http else "") + f"<td>{escape(e.title)}</td></tr>"
                       for e in table.values())

    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error codes — Upscaler API</title>
<link rel="stylesheet" href="../assets/app.css"></head><body><main>
<h1>Error codes</h1>
<p>Every error is an RFC 9457 problem details body with a stable <code>code</code>; its <code>type</code> links here.
Back to the <a href="../docs">API reference</a>.</p>
<h2>API answers</h2><table><thead><tr><th>code</th><th>HTTP</th><th>meaning</th></tr></thead>
<tbody>{rows(API_ERRORS, True)}</tbody></table>
<h2>Job failures</h2><p>A failed job's <code>error.code</code>.</p>
<table><thead><tr><th>code</th><th>meaning</th></tr></thead><tbody>{rows(JOB_ERRORS, False)}</tbody></table>
</main></body></html>"""
    return Response(page, mimetype="text/html")
