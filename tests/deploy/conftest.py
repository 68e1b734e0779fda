"""Fixtures of the deployment tests: the compose file and the Kubernetes manifests, parsed once."""

from __future__ import annotations

import os

import pytest

from tests.deploy.helpers import COMPOSE_FILE, COMPOSE_TEST_ENV, KUBERNETES, interpolate, load_yaml_documents


@pytest.fixture(scope="session")
def compose_raw() -> dict:
    """docker-compose.yml as written (anchors and merge keys resolved, variables not interpolated)."""
    (doc,) = load_yaml_documents(COMPOSE_FILE)
    return doc


@pytest.fixture(scope="session")
def compose(compose_raw) -> dict:
    """docker-compose.yml as compose sees it with the required secrets set and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSCALER_", "MINIO_", "POSTGRES_"))}
    return interpolate(compose_raw, {**env, **COMPOSE_TEST_ENV})


@pytest.fixture(scope="session")
def k8s_objects() -> list[tuple[str, dict]]:
    """(file name, object) for every manifest in deploy/kubernetes except the kustomization."""
    objects = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [(path.name, doc) for doc in load_yaml_documents(path)]
    return objects
