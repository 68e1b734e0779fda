"""Browser-facing hardening, in one place: response headers and the refusal of cross-site writes.

* Every response: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` (a signed result
  URL must never travel in a Referer header).
* HTML: a strict Content-Security-Policy (scripts and styles from this origin only, no framing:
  ``frame-ancestors 'none'`` plus ``X-Frame-Options`` for old browsers). Result images may come from a
  presigned S3 URL on another host, so ``img-src`` allows http(s) images.
* Cross-site writes: a browser on another site can POST a multipart form to an open API (a "simple"
  request needs no CORS pre-flight). Browsers label such requests (``Sec-Fetch-Site: cross-site``, or an
  ``Origin`` that is not ours); they are refused with 403. Scripts and SDKs send neither header and pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request

from api.errors import ApiError
from shared.settings import Settings

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data: https: http:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str:
    """A URL's origin as browsers serialise it: scheme, host, and the port only where it is not the scheme's
    default (``UPSCALER_PUBLIC_URL=https://host:443`` refused every upload of the page's own browser, which sends
    ``https://host``)."""
    parts = urlsplit(url.lower())
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not a port: an origin no page of ours sends
        return url.lower()
    shown = f":{port}" if port is not None and port != DEFAULT_PORTS.get(parts.scheme) else ""
    return f"{parts.scheme}://{host}{shown}"


def install_security(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _refuse_cross_site_writes() -> None:
        if request.method not in UNSAFE_METHODS:
            return
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        ours = {_origin(request.host_url)} | ({_origin(settings.public_url)} if settings.public_url else set())
        if site == "cross-site" or (origin and origin != "null" and _origin(origin) not in ours) or origin == "null":
            raise ApiError("cross_site_request", "requests from another site's page are refused; call the API from "
                                                 "a script or from this server's own page")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            # Swagger UI sets element styles from its script; nothing else relaxes the policy.
            relaxed = request.path.startswith("/docs")
            response.headers["Content-Security-Policy"] = CSP.replace(
                "style-src 'self'", "style-src 'self' 'unsafe-inline'") if relaxed else CSP
            response.headers["X-Frame-Options"] = "DENY"
        return response
