"""Paths and loaders shared by the deployment tests. Nothing here needs Docker, a cluster or the network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Values for the variables docker-compose.yml requires (`${VAR:?...}`), as an operator's .env would set them.
COMPOSE_TEST_ENV = {
    "UPSCALER_SECRET_KEY": "test-secret-0123456789abcdef",
    "POSTGRES_PASSWORD": "test-postgres-password",
    "MINIO_ROOT_PASSWORD": "test-minio-password",
}

_VARIABLE = re.compile(
    # an argument may hold one nested ${...} (a default built from another variable)
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A `${VAR:?message}` variable that is unset (compose stops with the message)."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (the subset docker-compose.yml uses), applied to every string value."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), interpolate(match.group("arg") or "", env)
        present = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else not present) else env[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not present:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if not (empty if op == ":+" else not present) else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def find(objects: list[tuple[str, dict]], kind: str, name: str) -> dict:
    matches = [obj for _, obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def platform_queues() -> set[str]:
    """Every queue the platform routes tasks to (the Celery configuration; building it connects to nothing)."""
    from shared.queue import make_celery
    from shared.settings import Settings

    return {queue.name for queue in make_celery(Settings()).conf.task_queues}


def consumed_queues(command: list[str] | str) -> set[str]:
    """The queues an `upscaler worker --queues a,b` command consumes (empty for other commands)."""
    words = command.split() if isinstance(command, str) else command
    if words[:2] != ["upscaler", "worker"]:
        return set()
    return set(words[words.index("--queues") + 1].split(","))
