"""The OpenAPI 3.1 document, generated from the route table and the pydantic schemas.

Each view declares its contract with ``@operation(...)``; the document is built from those
declarations and the very classes that validate requests, so it cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from pydantic import BaseModel

from api.auth import PUBLIC_ENDPOINTS
from api.schemas import Problem


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    form: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    tag: str = "jobs"
    headers: dict[str, str] = field(default_factory=dict)  # on every 200/202/303 answer
    status_headers: dict[int, dict[str, str]] = field(default_factory=dict)  # or each status its own
    request_headers: dict[str, str] = field(default_factory=dict)
    content_type: str | tuple[str, ...] | None = None  # a non-JSON 2xx body's media type(s)


# The answers of the routes that send a stored file (Werkzeug's send_file: no-cache, byte ranges)
_REVALIDATE = {"Cache-Control": "`no-cache`: a cache asks again before reusing its copy"}
# ... and their outcomes, the same for both (``api.downloads.send_download``)
DOWNLOAD_ANSWERS: dict[int, tuple[str, type[BaseModel] | None]] = {
    206: ("The byte range a Range header asked for", None),
    304: ("Not modified: If-None-Match (or, without it, If-Modified-Since) matched", None),
    412: ("If-Match (or, without it, If-Unmodified-Since) not met", Problem),
    416: ("A Range past the end of the file", Problem)}
DOWNLOAD_HEADERS = {200: _REVALIDATE,
                    206: {"Content-Range": "The bytes sent and the file's length: `bytes <first>-<last>/<length>`",
                          **_REVALIDATE},
                    416: {"Content-Range": "`bytes */<length>`: the file's length"}}


def operation(summary: str, responses: dict[int, tuple[str, type[BaseModel] | None]], **kwargs) -> Callable:
    """Attach the contract of a view for the OpenAPI document."""

    def decorate(view: Callable) -> Callable:
        view.openapi = Operation(summary, responses, **kwargs)
        return view

    return decorate


def _schema_ref(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_spec(app: Flask) -> dict:
    components: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        op: Operation | None = getattr(view, "openapi", None)
        if op is None:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            spec = _operation(op, rule.arguments, components, view.__name__)
            if rule.endpoint not in PUBLIC_ENDPOINTS:
                _add_common_responses(spec, method, components)
            spec["responses"].setdefault("default", {
                "description": "Any other error, e.g. 405 method_not_allowed (with Allow) or 500 internal_error",
                "content": {"application/problem+json": {"schema": _schema_ref(Problem, components)}}})
            _add_common_headers(spec, authenticated=rule.endpoint not in PUBLIC_ENDPOINTS)
            paths.setdefault(path, {})[method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": "Upscaler API", "version": "1.0.0",
                 "description": "Submit image upscaling jobs, poll them, fetch results. Errors are RFC 9457 "
                                "problem details with a stable `code` (the table: [/docs/errors](/docs/errors))."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "An API key (`upscaler keys create`); each key is a tenant that sees only "
                                      "its own jobs. Not needed by an open development API."}}},
    }


def _add_common_responses(spec: dict, method: str, components: dict) -> None:
    """What every authenticated route can answer, besides its own outcomes."""
    problem = {"application/problem+json": {"schema": _schema_ref(Problem, components)}}
    spec["security"] = [{"apiKey": []}, {}]
    common = {"401": {"description": "No valid API key", "content": problem},
              "429": {"description": "Rate limit (or, on submit, active-job limit or daily quota) reached",
                      "content": problem},
              "503": {"description": "A backing service is unavailable; nothing was done", "content": problem}}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        common["403"] = {"description": "A browser request from another site's page", "content": problem}
    for status, response in common.items():
        spec["responses"].setdefault(status, response)


def _header(text: str) -> dict:
    return {"description": text, "schema": {"type": "string"}}


# Headers the API's hooks put on answers, whatever the route (api.request_ids, api.quotas, api.auth, api.errors)
REQUEST_ID = {"X-Request-Id": _header("This request's id (the client's own if it sent one): quote it to the "
                                      "operator, whose log lines carry it; also `request_id` in an error's body")}
RATE_HEADERS = {"RateLimit-Policy": _header("The tenant's request quota and window (when a per-minute limit is set)"),
                "RateLimit": _header("Requests left and seconds to the window's reset")}
STATUS_HEADERS = {"401": {"WWW-Authenticate": _header('`Bearer realm="upscaler"`: send an API key')},
                  "429": {"Retry-After": _header("Seconds to wait")},
                  "503": {"Retry-After": _header("Seconds to wait before retrying")}}


def _add_common_headers(spec: dict, authenticated: bool) -> None:
    """What every answer of a route carries besides its own headers: the request id on all; on authenticated
    routes the rate-limit state on every answer past authentication (not on 401, which names no tenant);
    ``STATUS_HEADERS`` on the statuses they go with."""
    for status, response in spec["responses"].items():
        headers = response.setdefault("headers", {})
        for name, header in {**REQUEST_ID, **(RATE_HEADERS if authenticated and status != "401" else {}),
                             **STATUS_HEADERS.get(status, {})}.items():
            headers.setdefault(name, header)


def _operation(op: Operation, arguments, components: dict, operation_id: str) -> dict:
    problem_ref = _schema_ref(Problem, components)
    spec: dict = {"summary": op.summary, "operationId": operation_id, "tags": [op.tag], "responses": {}}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in sorted(arguments)]
    parameters += [{"name": name, "in": "header", "required": False, "description": text,
                    "schema": {"type": "string"}} for name, text in op.request_headers.items()]
    if op.query:
        schema = op.query.model_json_schema()
        for name, prop in schema["properties"].items():
            parameters.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                               "schema": prop})
    if parameters:
        spec["parameters"] = parameters
    if op.form:
        form = op.form.model_json_schema(ref_template="#/components/schemas/{model}")
        form.pop("$defs", None)
        form["properties"] = {"image": {"type": "string", "format": "binary",
                                        "description": "The image (PNG, JPEG, WebP, BMP, TIFF, GIF, HEIC/HEIF or "
                                                       "AVIF)."},
                              **form["properties"]}
        # exactly one of the file and the address (both: 400 bad_request)
        form["oneOf"] = [{"required": ["image"]}, {"required": ["image_url"]}]
        spec["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    for status, (description, model) in sorted(op.responses.items()):
        response: dict = {"description": description}
        if model is Problem:
            response["content"] = {"application/problem+json": {"schema": problem_ref}}
        elif model is not None:
            response["content"] = {"application/json": {"schema": _schema_ref(model, components)}}
        elif op.content_type and 200 <= status < 300:
            types = (op.content_type,) if isinstance(op.content_type, str) else op.content_type
            response["content"] = {t: {"schema": {"type": "string", "format": "binary"}} for t in types}
        headers = op.status_headers.get(status) or (op.headers if status in (200, 202, 303) else {})
        if headers:
            response["headers"] = {name: _header(text) for name, text in headers.items()}
        spec["responses"][str(status)] = response
    return spec
