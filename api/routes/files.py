"""``/v1/files/<key>``: signed, expiring downloads of objects in local storage."""

from __future__ import annotations

import re

from flask import Blueprint, request

from api.downloads import send_download
from api.errors import ApiError
from api.openapi import DOWNLOAD_ANSWERS, DOWNLOAD_HEADERS, operation
from api.schemas import FileLinkQuery, Problem
from api.services import services
from shared.signing import verify
from shared.storage import StorageError

blueprint = Blueprint("files", __name__, url_prefix="/v1/files")


@blueprint.get("/<path:key>")
@operation("Download a file through a signed link (local storage)",
           {200: ("The file", None), **DOWNLOAD_ANSWERS,
            403: ("Bad signature", Problem), 404: ("No such file", Problem), 410: ("Link expired", Problem)},
           tag="files", content_type="image/*",
           query=FileLinkQuery, status_headers=DOWNLOAD_HEADERS)
def download(key: str):
    svc = services()
    link = FileLinkQuery.model_validate(request.args.to_dict())
    reason = verify(svc.settings.secret_key, key, link.expires, link.signature, name=link.name)
    if reason:
        raise ApiError(reason)
    try:
        served = svc.storage.served_path(key)
        found = served is not None and svc.storage.exists(key)
    except StorageError:  # a key that would leave the storage folder: nothing there to find
        served, found = None, False
    if served is None or not found:
        raise ApiError("not_found", "no such file")
    return send_download(served, download_name=_download_name(key))


def _download_name(key: str) -> str:
    """The ``name`` the link carries (``shared.job_view.result_filename``, signed with the link), if it is a plain
    name (any script: Werkzeug writes it as RFC 6266's ``filename*``) with the stored object's extension; else the
    key's own last part."""
    own = key.rsplit("/", 1)[-1]
    asked = request.args.get("name") or ""
    plain = asked and not PATH_OR_CONTROL.search(asked) and asked.strip(". ") == asked
    return asked if plain and asked.rsplit(".", 1)[-1] == own.rsplit(".", 1)[-1] else own


PATH_OR_CONTROL = re.compile(r"[/\\\x00-\x1f\x7f]")
