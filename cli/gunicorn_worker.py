"""The API's gunicorn worker: gthread, answering the requests gunicorn refuses before the API sees them (a
request line past 4094 bytes, headers past gunicorn's limits, a request it cannot parse) with the API's
problem-details body and stable code, not gunicorn's HTML page, which clients parsing ``code`` could not read."""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

from gunicorn import util
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine, ParseException
from gunicorn.workers.gthread import ThreadWorker

from shared.errors import API_ERRORS, problem_body

REFUSED = ((LimitRequestLine, "uri_too_long"), (LimitRequestHeaders, "headers_too_large"),
           (ParseException, "bad_request"))


class ProblemWorker(ThreadWorker):
    def handle_error(self, req, client, addr, exc) -> None:
        """A refused request as problem+json; anything else (the API's own failures) as gunicorn does."""
        code = next((code for kind, code in REFUSED if isinstance(exc, kind)), None)
        if code is None:
            super().handle_error(req, client, addr, exc)
            return
        status = API_ERRORS[code].status
        request_id = uuid.uuid4().hex  # the headers were not read, a client's X-Request-Id with them
        self.log.warning("Invalid request from ip=%s (request id %s): %s", (addr or ("",))[0], request_id, exc)
        body = json.dumps(problem_body(code, f"{API_ERRORS[code].title}: {exc}", request_id=request_id)).encode()
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nConnection: close\r\n"
                f"Content-Type: application/problem+json\r\nX-Request-Id: {request_id}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:  # the client has gone
            self.log.debug("Failed to send error message.")
