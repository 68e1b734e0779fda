"""deploy/kubernetes: every object valid against the Kubernetes OpenAPI schemas (kubernetes-validate, offline)
or KEDA's CRD schema (vendored), and the facts the platform relies on: GPUs, queues, one beat, probes, budgets."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import threading
from dataclasses import fields

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.queue import INFERENCE_QUEUE, queue_lists
from shared.settings import Settings, SettingsError
from tests.deploy.helpers import KUBERNETES, ROOT, SCHEMAS, consumed_queues, find, load_json, platform_queues

# Validate against the oldest Kubernetes the manifests claim to support (1.28, docs/deploy.md), or the
# oldest schemas kubernetes-validate still ships if newer, and against the newest schemas it ships.
_SHIPPED = sorted(kubernetes_validate.utils.all_versions(), key=lambda v: tuple(map(int, v.split("."))))
KUBERNETES_VERSIONS = (next(v for v in _SHIPPED if tuple(map(int, v.split(".")[:2])) >= (1, 28)), _SHIPPED[-1])
NAMESPACE = "upscaler"
KEDA_API = "keda.sh/v1alpha1"
API, WORKER, LIGHT, BEAT = "upscaler-api", "upscaler-worker-gpu", "upscaler-worker-light", "upscaler-beat"


def strict(schema: dict) -> dict:
    """A CRD schema that rejects unknown fields, as the API server does with field validation "Strict"
    (kubectl's default since 1.27); the CRD schema itself only lists the known ones."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def keda_errors(obj: dict) -> list[str]:
    # OpenAPI v3.0 schemas are a dialect of JSON Schema draft 4/5; the keywords KEDA's CRD uses mean the same.
    schema = strict(load_json(SCHEMAS / "keda-scaledobject-v1alpha1.json"))
    validator = jsonschema.Draft4Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    # The CRD's one CEL rule (x-kubernetes-validations), which JSON Schema cannot express.
    spec = obj.get("spec", {})
    if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
        errors.append("spec: minReplicaCount must be less than or equal to maxReplicaCount")
    return errors


def kubernetes_errors(obj: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    return []


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def probe_command(probe: dict) -> str:
    return " ".join(probe["exec"]["command"])


# --- schemas --------------------------------------------------------------------------------------


def test_manifests_parse_and_are_namespaced(k8s_objects):
    kinds = sorted({obj["kind"] for _, obj in k8s_objects})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "Namespace",
                     "PodDisruptionBudget", "ScaledObject", "Secret", "Service"]
    for name, obj in k8s_objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "upscaler", (name, obj["kind"])
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, (name, obj["kind"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(k8s_objects, version):
    checked = 0
    for name, obj in k8s_objects:
        if obj["apiVersion"] == KEDA_API:
            continue
        assert kubernetes_errors(obj, version) == [], f"{name}: {obj['kind']} {obj['metadata']['name']}"
        checked += 1
    assert checked == len(k8s_objects) - 1


def test_kubernetes_validation_catches_mistakes(k8s_objects):
    deployment = copy.deepcopy(find(k8s_objects, "Deployment", API))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert kubernetes_errors(deployment, KUBERNETES_VERSIONS[0])
    hpa = copy.deepcopy(find(k8s_objects, "HorizontalPodAutoscaler", API))
    hpa["spec"]["maxReplicas"] = "ten"
    assert kubernetes_errors(hpa, KUBERNETES_VERSIONS[0])


def test_vendored_keda_schema_is_the_scaledobject_crd():
    schema = load_json(SCHEMAS / "keda-scaledobject-v1alpha1.json")
    assert schema["description"].startswith("ScaledObject")
    assert {"scaleTargetRef", "triggers"} <= set(schema["properties"]["spec"]["required"])
    jsonschema.Draft4Validator.check_schema(schema)


def test_scaled_object_matches_the_keda_crd(k8s_objects):
    scaled = find(k8s_objects, "ScaledObject", WORKER)
    assert scaled["apiVersion"] == KEDA_API
    assert keda_errors(scaled) == []


def test_keda_validation_catches_mistakes(k8s_objects):
    scaled = find(k8s_objects, "ScaledObject", WORKER)
    typo = copy.deepcopy(scaled)
    typo["spec"]["minReplicas"] = typo["spec"].pop("minReplicaCount")
    assert any("minReplicas" in error for error in keda_errors(typo))
    number = copy.deepcopy(scaled)
    number["spec"]["triggers"][0]["metadata"]["listLength"] = 2  # trigger metadata values are strings
    assert keda_errors(number)
    inverted = copy.deepcopy(scaled)
    inverted["spec"]["minReplicaCount"] = inverted["spec"]["maxReplicaCount"] + 1
    assert keda_errors(inverted)


def test_kustomization_lists_every_manifest_but_the_secret():
    """`kubectl apply -k` runs on every upgrade: with secret.yaml listed it put the CHANGE-ME placeholders back over
    the real Secret. The Secret is created once, on its own (docs/deploy.md)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert "secret.yaml" in files and "secret.yaml" not in kustomization["resources"]
    assert sorted(kustomization["resources"]) == sorted(files - {"secret.yaml"})
    images = {image["name"] for image in kustomization["images"]}
    used = set()
    for path in files:
        references = re.findall(r"image: (\S+)", (KUBERNETES / path).read_text())
        used |= {re.sub(r":[^:/]+$", "", reference) for reference in references}
    assert images == used


def test_documented_install_creates_the_secret_once_in_an_existing_namespace():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    kubernetes = docs[docs.index("## Kubernetes"):]
    # The namespace exists before the Secret is created in it ("namespace not found" otherwise)...
    namespace = kubernetes.index("kubectl apply -f deploy/kubernetes/namespace.yaml")
    assert namespace < kubernetes.index("create secret generic upscaler-secrets")
    assert namespace < kubernetes.index("kubectl apply -f deploy/kubernetes/secret.yaml")
    # ...and the install and upgrade commands (the block ending in `apply -k`) never apply the placeholders.
    (install,) = [block for block in re.findall(r"```bash\n(.*?)```", kubernetes, re.S)
                  if "kubectl apply -k deploy/kubernetes" in block]
    assert "secret" not in install
    # The ScaledObject's formula (scalingModifiers) needs KEDA 2.12: an older one drops it and under-scales.
    (minor,) = re.findall(r"\[KEDA\]\(https://keda\.sh\) 2\.(\d+)", docs)
    assert int(minor) >= 12


# --- the platform's needs ---------------------------------------------------------------------------


def test_gpu_worker_requests_a_gpu_and_shuts_down_warm(k8s_objects):
    worker = find(k8s_objects, "Deployment", WORKER)
    (container,) = containers(worker)
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == 1
    assert container["command"] == ["upscaler", "worker", "--queues", INFERENCE_QUEUE, "--concurrency", "1"]
    config = find(k8s_objects, "ConfigMap", "upscaler-config")["data"]
    # Past the task's hard limit, not only the job time limit (the soft one): a pod killed at the soft limit died
    # while its job was being failed `time_limit`, and the job ran again, up to another whole time limit.
    hard_limit = Settings(job_time_limit=int(config["UPSCALER_JOB_TIME_LIMIT"])).job_hard_time_limit
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > hard_limit
    # KEDA owns the replica count.
    assert "replicas" not in worker["spec"]


def test_the_api_pod_outlasts_its_requests_in_flight(k8s_objects):
    """The preStop pause plus gunicorn's graceful timeout (which outlasts the longest Prefer: wait) fit in the
    pod's grace period: a rollout never cuts off a request whose job was already made."""
    from cli.services import GRACEFUL_SECONDS
    from shared.limits import MAX_WAIT_SECONDS

    api = find(k8s_objects, "Deployment", API)
    (container,) = containers(api)
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert GRACEFUL_SECONDS > MAX_WAIT_SECONDS
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pause + GRACEFUL_SECONDS


def test_scaled_object_scales_the_worker_on_the_inference_list(k8s_objects):
    scaled = find(k8s_objects, "ScaledObject", WORKER)["spec"]
    worker = find(k8s_objects, "Deployment", WORKER)
    target = scaled["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment"), target["name"]) == (
        worker["apiVersion"], "Deployment", worker["metadata"]["name"])
    assert scaled["minReplicaCount"] == 0
    assert 1 <= scaled["maxReplicaCount"] <= 100
    triggers = scaled["triggers"]
    # Every priority level's list is watched: a flooding tenant's jobs wait in the back levels.
    assert [t["metadata"]["listName"] for t in triggers] == queue_lists(INFERENCE_QUEUE)
    redis_url = find(k8s_objects, "Secret", "upscaler-secrets")["stringData"]["UPSCALER_REDIS_URL"]
    # ...and the backlog is their sum (KEDA's HPA would otherwise follow the longest list alone)
    modifiers = scaled["advanced"]["scalingModifiers"]
    names = [t["name"] for t in triggers]
    assert sorted(re.split(r"\s*\+\s*", modifiers["formula"])) == sorted(names) and len(set(names)) == len(names)
    assert modifiers["metricType"] == "AverageValue" and int(modifiers["target"]) >= 1
    assert modifiers["activationTarget"] == "0"  # one waiting job wakes the Deployment from zero
    for trigger in triggers:
        assert trigger["type"] == "redis" and int(trigger["metadata"]["listLength"]) >= 1
        # The trigger reads the same Redis database as the platform.
        address, index = trigger["metadata"]["address"], trigger["metadata"].get("databaseIndex", "0")
        assert redis_url == f"redis://{address}/{index}"


def test_api_is_scaled_on_cpu_and_probed(k8s_objects):
    api = find(k8s_objects, "Deployment", API)
    hpa = find(k8s_objects, "HorizontalPodAutoscaler", API)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert "replicas" not in api["spec"]
    (container,) = containers(api)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][:2] == ["upscaler", "api"]
    assert "--workers" in container["command"]  # the default counts the node's cores, not the pod's
    service = find(k8s_objects, "Service", API)
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()


def test_workers_are_probed_with_a_celery_ping(k8s_objects):
    for name in (WORKER, LIGHT):
        (container,) = containers(find(k8s_objects, "Deployment", name))
        for probe in ("readinessProbe", "livenessProbe"):
            command = probe_command(container[probe])
            assert "celery -A worker.celery_app inspect ping" in command, (name, probe)
            assert "celery@$HOSTNAME" in command and container[probe]["exec"]["command"][:2] == ["/bin/sh", "-c"]


def test_every_queue_has_a_consumer(k8s_objects):
    consumers = {obj["metadata"]["name"]: set().union(*(consumed_queues(c["command"]) for c in containers(obj)))
                 for _, obj in k8s_objects if obj["kind"] == "Deployment"}
    assert set().union(*consumers.values()) == platform_queues()
    assert consumers[WORKER] == {INFERENCE_QUEUE}
    assert consumers[LIGHT] == platform_queues() - {INFERENCE_QUEUE}


def test_exactly_one_beat(k8s_objects):
    beat = find(k8s_objects, "Deployment", BEAT)
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    (container,) = containers(beat)
    assert container["command"] == ["upscaler", "beat"]
    beats = [obj for _, obj in k8s_objects if obj["kind"] == "Deployment"
             and any(c["command"][:2] == ["upscaler", "beat"] for c in containers(obj))]
    assert beats == [beat]
    assert not any(obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
                   and obj["spec"]["scaleTargetRef"]["name"] == BEAT for _, obj in k8s_objects)


def test_migration_job(k8s_objects):
    job = find(k8s_objects, "Job", "upscaler-migrate")
    (container,) = containers(job)
    assert container["command"] == ["upscaler", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_disruption_budgets_cover_api_and_workers(k8s_objects):
    budgets = {obj["metadata"]["name"]: obj for _, obj in k8s_objects if obj["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {API, WORKER, LIGHT}
    for name, budget in budgets.items():
        labels = find(k8s_objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name


def test_pods_run_unprivileged_with_resources(k8s_objects):
    for _, obj in k8s_objects:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = (obj["metadata"]["name"], container["name"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["envFrom"] == [{"configMapRef": {"name": "upscaler-config"}},
                                            {"secretRef": {"name": "upscaler-secrets"}}], where
        if obj["kind"] == "Deployment":  # a selector that misses its own pods is rejected by the API server
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_configuration_keys_are_settings(k8s_objects):
    known = {f"UPSCALER_{f.name.upper()}" for f in fields(Settings)}
    config = find(k8s_objects, "ConfigMap", "upscaler-config")["data"]
    secret = find(k8s_objects, "Secret", "upscaler-secrets")["stringData"]
    assert set(config) <= known and set(secret) <= known
    assert not set(config) & set(secret)
    assert config["UPSCALER_ENV"] == "production"
    assert all(isinstance(value, str) for value in config.values())
    # The placeholders are marked, and the secret key's and the metrics token's are refused in production: nothing
    # starts until they are set.
    assert "CHANGE-ME" in secret["UPSCALER_SECRET_KEY"]
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings.from_env({**config, **secret})
    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        Settings.from_env({**config, **secret, "UPSCALER_SECRET_KEY": "a-real-secret-0123456789"})
    Settings.from_env({**config, **secret, "UPSCALER_SECRET_KEY": "a-real-secret-0123456789",
                       "UPSCALER_METRICS_TOKEN": "a-real-token-0123456789"})


# --- start order ------------------------------------------------------------------------------------------


def schema_waits(obj: dict) -> list[dict]:
    return [c for c in obj["spec"]["template"]["spec"].get("initContainers", []) if c["name"] == "wait-for-schema"]


def test_workers_and_beat_wait_for_the_migration(k8s_objects):
    """Only the API had a gate (/readyz): a worker or beat Deployment applied before its migration (a plain
    `kubectl apply -k`, or a Job that failed to apply) ran the new code on the old schema."""
    for name in (WORKER, LIGHT, BEAT):
        deployment = find(k8s_objects, "Deployment", name)
        (wait,) = schema_waits(deployment)
        (container,) = containers(deployment)
        assert wait["image"] == container["image"], name  # no second image to pull onto the node
        assert wait["envFrom"] == container["envFrom"], name
        assert wait["command"] == ["upscaler", "wait-for-schema"], name


def run_schema_wait(database_url: str, tmp_path) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "UPSCALER_DATABASE_URL": database_url,
           "UPSCALER_SECRET_KEY": "s" * 32}
    return subprocess.Popen([sys.executable, "-m", "cli", "wait-for-schema", "--interval", "0.2"], cwd=ROOT,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_the_schema_wait_holds_until_the_database_is_migrated(tmp_path):
    from shared.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'upscaler.db'}"
    waiting = run_schema_wait(url, tmp_path)
    guard = threading.Timer(120, waiting.kill)
    guard.start()
    try:
        first = waiting.stdout.readline()  # the first report; the command itself never gives up
        upgrade(url)  # migrated meanwhile: the same process ends
        output, _ = waiting.communicate(timeout=60)
    finally:
        guard.cancel()
        waiting.kill()
    assert first.startswith("waiting for the migration: schema at nothing"), first
    assert waiting.returncode == 0, output


def test_workers_declare_their_metrics_port(k8s_objects):
    """Workers serve Prometheus metrics on UPSCALER_WORKER_METRICS_PORT (9808 in the ConfigMap), but no worker
    container declared it: a PodMonitor (``port: metrics``) or a pod scrape config keyed on declared ports found
    nothing to scrape, so the job outcomes, durations and throughput were never collected on Kubernetes."""
    port = int(find(k8s_objects, "ConfigMap", "upscaler-config")["data"]["UPSCALER_WORKER_METRICS_PORT"])
    for name in (WORKER, LIGHT):
        [container] = find(k8s_objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": port} in container.get("ports", []), name
