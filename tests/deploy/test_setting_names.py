"""Every UPSCALER_* name the docs and deployment files set or explain is one the code reads: a renamed or removed
setting left in a manifest or a doc is silently ignored (Settings.from_env skips unknown names)."""

from __future__ import annotations

import re
from dataclasses import fields

from shared.settings import Settings
from tests.deploy.helpers import DEPLOY, ROOT

# Read by something other than Settings: the SDK and the CLI's client commands (API_URL, API_KEY), the training and
# benchmark commands (DATA_DIR), and docker-compose.yml itself (the host port, the image names).
NOT_SETTINGS = {"UPSCALER_API_URL", "UPSCALER_API_KEY", "UPSCALER_DATA_DIR", "UPSCALER_HTTP_PORT",
                "UPSCALER_APP_IMAGE", "UPSCALER_WORKER_IMAGE", "UPSCALER_WORKER_CPU_IMAGE"}


def documents() -> list:
    return [ROOT / "README.md", ROOT / "docker-compose.yml", *sorted((ROOT / "docs").glob("*.md")),
            *sorted(p for p in DEPLOY.rglob("*")
                    if p.is_file() and (p.suffix in (".yml", ".yaml", ".example") or p.name.endswith("Dockerfile")))]


def test_every_upscaler_name_in_the_docs_and_manifests_is_read():
    known = {f"UPSCALER_{f.name.upper()}" for f in fields(Settings)} | NOT_SETTINGS
    unknown = {}
    for path in documents():
        # a name followed by `*` or `_` alone is a family (`UPSCALER_S3_*`), not one variable
        names = set(re.findall(r"\bUPSCALER_[A-Z0-9_]*[A-Z0-9]\b(?![*_])", path.read_text()))
        if names - known:
            unknown[path.relative_to(ROOT).as_posix()] = sorted(names - known)
    assert unknown == {}
