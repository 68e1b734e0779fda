"""deploy/*.Dockerfile and .dockerignore, read statically: what goes into each image and how it runs."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = sorted(p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions per build stage; ARG defaults are substituted into FROM lines."""
    args, result = {}, []
    for keyword, arguments in instructions(path):
        if keyword == "ARG" and not result:
            name, _, default = arguments.partition("=")
            args[name] = default
        if keyword == "FROM":
            arguments = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), arguments)
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    return stages(path)[-1]


def values(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for k, arguments in stage if k == keyword]


def pip_installs(path: Path) -> list[str]:
    text = " ".join(arguments for stage in stages(path) for k, arguments in stage if k == "RUN")
    return re.findall(r"pip install ([^&|;]*)", text)


def copied_sources(path: Path) -> set[str]:
    sources = set()
    for stage in stages(path):
        for arguments in values(stage, "COPY"):
            if arguments.startswith("--from"):
                continue
            sources |= set(arguments.split()[:-1])
    return sources


@pytest.mark.parametrize("dockerfile", ["api.Dockerfile", "worker.Dockerfile"])
def test_images_run_as_an_unprivileged_user_with_a_healthcheck(dockerfile):
    stage = final_stage(DEPLOY / dockerfile)
    users = values(stage, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = values(stage, "HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    assert isinstance(json.loads(command), list)  # exec form: no shell unless the command asks for one


@pytest.mark.parametrize("dockerfile", ["api.Dockerfile", "worker.Dockerfile"])
def test_images_contain_every_package_and_the_weights(dockerfile):
    sources = copied_sources(DEPLOY / dockerfile)
    assert {"pyproject.toml", "README.md", *PACKAGES} <= sources, f"missing from the image: {sources}"
    # The weights are package data of `shared`, so a non-editable install bakes them in.
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["shared"]
    assert {"weights/*.json", "weights/*.h5"} <= set(package_data)
    assert list((ROOT / "shared" / "weights").glob("*.weights.h5"))


def test_api_image_has_no_tensorflow():
    stage_list = stages(DEPLOY / "api.Dockerfile")
    assert all(values(stage, "FROM")[0].startswith("python:3.11-slim") for stage in stage_list)
    installs = pip_installs(DEPLOY / "api.Dockerfile")
    assert any('".[postgres]"' in args for args in installs)
    for args in installs:
        assert not re.search(r"tensorflow|keras|\[(worker|gpu)", args), args
    (cmd,) = values(final_stage(DEPLOY / "api.Dockerfile"), "CMD")
    assert json.loads(cmd) == ["upscaler", "api", "--host", "0.0.0.0"]
    (healthcheck,) = values(final_stage(DEPLOY / "api.Dockerfile"), "HEALTHCHECK")
    assert "/healthz" in healthcheck


def test_worker_image_builds_on_tensorflow_gpu():
    ((_, base),) = [i for i in final_stage(DEPLOY / "worker.Dockerfile") if i[0] == "FROM"]
    match = re.fullmatch(r"tensorflow/tensorflow:2\.(\d+)\.\d+-gpu", base)
    assert match and int(match.group(1)) >= 16, base  # 2.16+: Keras 3
    installs = pip_installs(DEPLOY / "worker.Dockerfile")
    (install,) = [args for args in installs if ".[postgres,streaming]" in args]  # libvips for big outputs
    assert re.search(r'"keras>=3', install)
    # TensorFlow comes from the base image and is pinned by the constraints file, never installed again.
    assert "--constraint" in install and "tensorflow" not in install.split("--constraint")[1].split(None, 1)[1]
    (cmd,) = values(final_stage(DEPLOY / "worker.Dockerfile"), "CMD")
    assert json.loads(cmd) == ["upscaler", "worker", "--queues", "inference", "--concurrency", "1"]
    (healthcheck,) = values(final_stage(DEPLOY / "worker.Dockerfile"), "HEALTHCHECK")
    assert "inspect ping" in healthcheck


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Docker's rules: the last matching
    pattern wins, `!` re-includes, a pattern matching a folder matches everything below it)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        variants = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            excluded = not negated
    return excluded


def test_dockerignore_sends_only_what_the_build_needs():
    for path in ("pyproject.toml", "README.md", "shared/weights/residual_sr.weights.h5", "migrations/env.py",
                 "api/app.py", "worker/engine/network.py", "cli/__main__.py"):
        assert not dockerignored(path), path
    for path in (".venv/bin/python", "var/upscaler.db", "runs/train/checkpoint.h5", ".git/HEAD",
                 "api/__pycache__/app.cpython-311.pyc", ".pytest_cache/v/cache", ".ruff_cache/x",
                 "tests/test_cli.py", ".env", "upscaler.egg-info/PKG-INFO", "shared/__pycache__/db.pyc"):
        assert dockerignored(path), path
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            relative = file.relative_to(ROOT).as_posix()
            assert "__pycache__" in relative or not dockerignored(relative), relative
    text = (ROOT / ".dockerignore").read_text()
    for entry in (".venv", "var", "runs", ".git"):
        assert re.search(rf"^{re.escape(entry)}$", text, re.M), entry
