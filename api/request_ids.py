"""A request id for every API request: the client's ``X-Request-Id`` (a proxy's or a load balancer's, so one id
follows the request through them) or one made up here; answered in the same header and in every error body, and
attached to every log line written while the request is served (``shared.logs``). A customer quoting it from a
500 lets an operator find that request's traceback with one query."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from shared.logs import current_request, set_request

HEADER = "X-Request-Id"
# what is taken from the client: short and plain, so a log line or a header cannot be forged through it
ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str | None:
    """The id of the request being served (None outside one)."""
    return g.get("request_id")


def install_request_ids(app: Flask) -> None:
    """Register first, so every later hook's errors and lines carry the id."""

    @app.before_request
    def _take_id() -> None:
        sent = request.headers.get(HEADER, "")
        g.request_id = sent if ACCEPTED.fullmatch(sent) else uuid.uuid4().hex
        g.request_id_token = set_request(g.request_id)

    @app.after_request
    def _answer_id(response: Response) -> Response:
        if request_id():
            response.headers[HEADER] = request_id()
        return response

    @app.teardown_request
    def _forget_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            current_request.reset(token)
