"""docker-compose.yml: valid against the Compose Specification's JSON schema, and wired the way the platform needs."""

from __future__ import annotations

import re
from dataclasses import fields

import jsonschema
import pytest
import yaml

from shared.queue import INFERENCE_QUEUE
from shared.settings import Settings, SettingsError
from tests.deploy.helpers import (
    COMPOSE_TEST_ENV,
    ROOT,
    SCHEMAS,
    MissingVariable,
    consumed_queues,
    interpolate,
    load_json,
    platform_queues,
)

ONE_SHOT = {"migrate", "create-bucket"}
PLATFORM = {"api", "worker-gpu", "worker-cpu", "worker-light", "beat", "migrate"}
INFERENCE_WORKERS = {"worker-gpu", "worker-cpu"}
SECRETS = ("UPSCALER_SECRET_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD")


def schema_errors(document: dict) -> list[str]:
    schema = load_json(SCHEMAS / "compose-spec.json")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def duration_seconds(value: str) -> float:
    """Compose durations: '1h30m', '10m', '40s', '1m0s'."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def test_vendored_schema_is_the_compose_specification():
    schema = load_json(SCHEMAS / "compose-spec.json")
    assert schema["title"] == "Compose Specification"
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_compose_file_is_valid_as_written(compose_raw):
    assert schema_errors(compose_raw) == []


def test_compose_file_is_valid_after_interpolation(compose):
    assert schema_errors(compose) == []


def test_schema_validation_catches_mistakes(compose):
    broken = {**compose, "services": {**compose["services"], "api": {**compose["services"]["api"], "helthcheck": {}}}}
    assert any("helthcheck" in error for error in schema_errors(broken))


def test_no_obsolete_version_key(compose_raw):
    assert "version" not in compose_raw


def test_links_follow_the_published_ports(compose_raw):
    """Result links point where the API and MinIO are published: moving a port moved the service, not its links."""
    def env_of(extra: dict) -> dict:
        return interpolate(compose_raw, {**COMPOSE_TEST_ENV, **extra})["services"]["api"]["environment"]

    moved = env_of({"MINIO_PORT": "9100", "UPSCALER_HTTP_PORT": "8080"})
    assert (moved["UPSCALER_S3_PUBLIC_ENDPOINT_URL"], moved["UPSCALER_PUBLIC_URL"]) == \
        ("http://localhost:9100", "http://localhost:8080")
    default = env_of({})
    assert (default["UPSCALER_S3_PUBLIC_ENDPOINT_URL"], default["UPSCALER_PUBLIC_URL"]) == \
        ("http://localhost:9000", "http://localhost:8000")
    assert env_of({"UPSCALER_PUBLIC_URL": "https://up.example"})["UPSCALER_PUBLIC_URL"] == "https://up.example"
    # AWS as the docs say: both endpoints set empty (AWS's own; links the same) stay empty, not the local MinIO
    aws = env_of({"UPSCALER_S3_ENDPOINT_URL": "", "UPSCALER_S3_PUBLIC_ENDPOINT_URL": "", "UPSCALER_S3_BUCKET": "b"})
    assert (aws["UPSCALER_S3_ENDPOINT_URL"], aws["UPSCALER_S3_PUBLIC_ENDPOINT_URL"]) == ("", "")
    assert default["UPSCALER_S3_ENDPOINT_URL"] == "http://minio:9000"


def env_example_values() -> dict[str, str]:
    """The variables deploy/env.example sets (its uncommented lines), as a .env copied from it sets them."""
    text = (ROOT / "deploy" / "env.example").read_text()
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", text, re.M))


def test_env_example_leaves_links_on_the_published_ports(compose_raw):
    """A .env copied from env.example, with the API and MinIO moved to other ports: the links follow them (a pinned
    UPSCALER_PUBLIC_URL=http://localhost:8000 there kept every link on the old port)."""
    env = {**env_example_values(), **COMPOSE_TEST_ENV, "UPSCALER_HTTP_PORT": "8080", "MINIO_PORT": "9100"}
    api = interpolate(compose_raw, env)["services"]["api"]
    assert api["ports"] == ["8080:8000"]
    assert (api["environment"]["UPSCALER_PUBLIC_URL"], api["environment"]["UPSCALER_S3_PUBLIC_ENDPOINT_URL"]) == \
        ("http://localhost:8080", "http://localhost:9100")


def test_env_example_states_the_metrics_token_length():
    """A metrics token shorter than the settings accept stops every container in production: say so where it is set."""
    from shared.settings import MIN_SECRET_LENGTH

    lines = (ROOT / "deploy" / "env.example").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(r"^#?UPSCALER_METRICS_TOKEN=", line))
    comment = []
    for line in reversed(lines[:at]):
        if not line.startswith("# "):
            break
        comment.insert(0, line)
    assert f"{MIN_SECRET_LENGTH}+ characters" in " ".join(comment), comment
    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        Settings.from_env({"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": COMPOSE_TEST_ENV["UPSCALER_SECRET_KEY"],
                           "UPSCALER_METRICS_TOKEN": "x" * (MIN_SECRET_LENGTH - 1)})


def test_gpu_hosts_choose_their_workers_in_env():
    """Profiles and files are chosen in .env, never per command: the documented upgrade, a plain
    `docker compose up -d --build`, takes them from .env, so `--profile gpu` on the install command left a GPU host
    with `cpu` there (the CPU worker started next to the GPU one, which stayed on the old image)."""
    env_example = (ROOT / "deploy" / "env.example").read_text()
    (files,) = re.findall(r"^#COMPOSE_FILE=(.*)$", env_example, re.M)
    assert files.split(":") == ["docker-compose.yml", "deploy/compose.gpus.yml"]
    assert all((ROOT / name).is_file() for name in files.split(":"))
    documents = {name: (ROOT / name).read_text() for name in
                 ("README.md", "docs/deploy.md", "docker-compose.yml", "deploy/compose.gpus.yml", "deploy/env.example")}
    for name, text in documents.items():
        for command in re.findall(r"docker compose\b[^\n`]*", text):
            assert not re.search(r"\s(?:--profile|-f|--file)\b", command), f"{name}: {command}"
    for name in ("README.md", "docs/deploy.md"):
        assert "COMPOSE_PROFILES=gpu" in documents[name], name
    assert "COMPOSE_FILE=docker-compose.yml:deploy/compose.gpus.yml" in documents["docs/deploy.md"]


def test_secrets_are_required_from_the_environment(compose_raw):
    with pytest.raises(MissingVariable):
        interpolate(compose_raw, {})
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            interpolate(compose_raw, {k: v for k, v in COMPOSE_TEST_ENV.items() if k != name})
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        assert re.search(r"\$\{" + name + r":\?[^}]+\}", text), f"{name} must be required with ${{{name}:?message}}"


def test_every_long_running_service_has_a_healthcheck(compose):
    services = compose["services"]
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == ONE_SHOT
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test") and not healthcheck.get("disable"), name
        assert service.get("restart") == "unless-stopped", name


def test_healthcheck_commands(compose):
    services = compose["services"]
    api_test = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in api_test
    for name in (*INFERENCE_WORKERS, "worker-light"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", name
        # After interpolation `$$HOSTNAME` is `$HOSTNAME`, expanded by the container's shell.
        assert "celery -A worker.celery_app inspect ping" in test[1] and "celery@$HOSTNAME" in test[1], name
        assert "upscaler worker-health" in test[1], name  # a dead pool must read unhealthy
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ready" in services["minio"]["healthcheck"]["test"]


def test_postgres_is_healthy_only_when_it_takes_tcp_connections(compose):
    """On a fresh volume the postgres image runs a temporary server for its init scripts that listens on the Unix
    socket only: pg_isready without a host said "ready" there, and `migrate` (restart "no") then met a closed port."""
    (command,) = [part for part in compose["services"]["postgres"]["healthcheck"]["test"] if "pg_isready" in part]
    assert re.search(r"(?:^|\s)(?:-h\s*|--host[=\s])127\.0\.0\.1(?:\s|$)", command), command


def test_gpu_worker_reserves_an_nvidia_gpu(compose):
    worker = compose["services"]["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    (device,) = devices
    assert device["driver"] == "nvidia"
    assert device["count"] in (1, "all")
    assert "gpu" in device["capabilities"]
    assert worker["profiles"] == ["gpu"]
    assert command_text(worker) == f"upscaler worker --queues {INFERENCE_QUEUE} --concurrency 1"
    assert "worker.Dockerfile" in worker["build"]["dockerfile"]


def test_cpu_worker_is_behind_its_own_profile(compose):
    worker = compose["services"]["worker-cpu"]
    assert worker["profiles"] == ["cpu"]
    assert "deploy" not in worker
    assert command_text(worker).startswith(f"upscaler worker --queues {INFERENCE_QUEUE}")
    # Sized by the environment: processes (UPSCALER_WORKER_CONCURRENCY) x threads (UPSCALER_INFERENCE_THREADS).
    assert "--concurrency" not in command_text(worker)
    assert {"UPSCALER_WORKER_CONCURRENCY", "UPSCALER_INFERENCE_THREADS"} <= set(worker["environment"])
    assert not worker["build"]["args"]["TF_IMAGE"].endswith("-gpu")


def test_default_profile_starts_everything_but_inference(compose):
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == set(compose["services"]) - INFERENCE_WORKERS
    env_example = (ROOT / "deploy" / "env.example").read_text()
    assert re.search(r"^COMPOSE_PROFILES=cpu$", env_example, re.M)


def test_commands(compose):
    services = compose["services"]
    assert command_text(services["beat"]) == "upscaler beat"
    assert command_text(services["migrate"]) == "upscaler migrate"
    assert command_text(services["api"]).startswith("upscaler api --host 0.0.0.0 --port 8000 --workers ")
    assert services["api"]["ports"][0].endswith(":8000")


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_queue_has_a_consumer(compose, profile):
    services = compose["services"]
    active = {name: s for name, s in services.items() if not s.get("profiles") or profile in s["profiles"]}
    consumers = {name: consumed_queues(s.get("command", "")) for name, s in active.items()}
    assert set().union(*consumers.values()) == platform_queues()
    # Inference only on the inference worker; the light worker takes every other queue.
    assert {name for name, queues in consumers.items() if INFERENCE_QUEUE in queues} == {f"worker-{profile}"}
    assert consumers[f"worker-{profile}"] == {INFERENCE_QUEUE}
    assert consumers["worker-light"] == platform_queues() - {INFERENCE_QUEUE}


def test_database_users_wait_for_migrations(compose):
    services = compose["services"]
    needs_db = {name for name, service in services.items() if "UPSCALER_DATABASE_URL" in service.get("environment", {})}
    assert needs_db == PLATFORM
    for name in needs_db - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in {"api", "worker-gpu", "worker-cpu", "worker-light"}:
        assert services[name]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_depends_on_names_existing_services(compose):
    services = compose["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name


def test_workers_shut_down_warm(compose):
    services = compose["services"]
    for name in INFERENCE_WORKERS:
        assert duration_seconds(services[name]["stop_grace_period"]) >= 300, name
    assert duration_seconds(services["worker-light"]["stop_grace_period"]) >= 30
    # the API's requests in flight (a Prefer: wait of up to 60 s) finish before the container is killed
    from cli.services import GRACEFUL_SECONDS

    assert duration_seconds(services["api"]["stop_grace_period"]) > GRACEFUL_SECONDS
    for name in PLATFORM - ONE_SHOT:
        # An init process forwards SIGTERM to Celery/gunicorn and reaps health-check children.
        assert services[name].get("init") is True, name


def test_platform_configuration_comes_from_the_shared_environment(compose):
    services = compose["services"]
    base = services["api"]["environment"]
    known = {f"UPSCALER_{f.name.upper()}" for f in fields(Settings)}
    assert set(base) <= known, f"not settings: {sorted(set(base) - known)}"
    assert base["UPSCALER_ENV"] == "production"
    assert base["UPSCALER_STORAGE"] == "s3"
    assert base["UPSCALER_DATABASE_URL"].startswith("postgresql://upscaler:")
    assert base["UPSCALER_REDIS_URL"].startswith("redis://redis:6379/")
    assert base["UPSCALER_SECRET_KEY"] == COMPOSE_TEST_ENV["UPSCALER_SECRET_KEY"]
    for name in PLATFORM:
        environment = services[name]["environment"]
        assert set(environment) <= known, name
        for key, value in base.items():
            if key not in ("UPSCALER_WORKER_CONCURRENCY", "UPSCALER_INFERENCE_THREADS"):
                assert environment[key] == value, (name, key)
    # What compose passes is what the platform accepts (empty values mean "the default").
    Settings.from_env(base)


def test_images_and_data_services(compose):
    services = compose["services"]
    app_image = services["api"]["image"]
    for name in ("migrate", "beat", "worker-light"):
        assert services[name]["image"] == app_image, name
        assert services[name]["build"]["dockerfile"] == "deploy/api.Dockerfile", name
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
    assert services["redis"]["image"].startswith("redis:7")
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["create-bucket"]["image"].startswith("minio/mc")
    assert "mc mb --ignore-existing" in " ".join(services["create-bucket"]["command"])


def test_named_volumes(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith((".", "/")), f"bind mount {source}: use a named volume"
            used.add(source)
    assert used == declared == {"redis-data", "postgres-data", "minio-data"}


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def test_compose_variables_are_documented(compose_raw):
    """Variables of the compose file itself (secrets, ports, images) are explained for the operator.

    UPSCALER_* settings are explained in README.md's Configuration table; the required ones are also here.
    """
    text = "\n".join(strings(compose_raw))
    settings = {f"UPSCALER_{f.name.upper()}" for f in fields(Settings)}
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    compose_only = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text)) - settings
    assert required == set(SECRETS)
    docs = (ROOT / "docs" / "deploy.md").read_text()
    env_example = (ROOT / "deploy" / "env.example").read_text()
    for name in sorted(required | compose_only):
        assert name in docs, f"{name} is not explained in docs/deploy.md"
        assert re.search(rf"^#?{name}=", env_example, re.M), f"{name} is missing from deploy/env.example"


class OverrideLoader(yaml.SafeLoader):
    """Reads compose's `!override` / `!reset` merge tags as plain values."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)


for _tag in ("!override", "!reset"):
    OverrideLoader.add_constructor(_tag, _untagged)


def test_multi_gpu_override_pins_one_gpu_per_worker(compose_raw):
    path = ROOT / "deploy" / "compose.gpus.yml"
    override = yaml.load(path.read_text(), Loader=OverrideLoader)
    assert schema_errors(override) == []
    assert schema_errors(interpolate(override, COMPOSE_TEST_ENV)) == []
    base = compose_raw["services"]["worker-gpu"]
    assert set(override["services"]["worker-gpu"]) == {"deploy"}
    pinned = []
    for name, service in override["services"].items():
        assert name.startswith("worker-gpu"), name
        if name != "worker-gpu":
            # Written out, not `extends: worker-gpu` (Compose versions refuse it, or drop its depends_on), and the
            # same worker as docker-compose.yml's in everything but the GPU it reserves.
            assert "extends" not in service, name
            assert {k: v for k, v in service.items() if k != "deploy"} == \
                {k: v for k, v in base.items() if k != "deploy"}, f"{name} differs from docker-compose.yml's worker-gpu"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and "count" not in device
        pinned += device["device_ids"]
    assert len(pinned) == len(set(pinned)) >= 2
    # Without `!override` compose would append worker-gpu's device to the base file's `count: 1` reservation.
    assert re.search(r"^  worker-gpu:\n(?:    .*\n|\n)*?          devices: !override$", path.read_text(), re.M)
