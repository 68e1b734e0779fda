"""The ``upscaler`` console script: one-shot upscale, migrate, and the dev launcher."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, inspect

from cli.__main__ import build_parser
from cli.arguments import UsageError
from cli.processes import free_port
from cli.records import RECORD
from tests.conftest import write_image
from tests.factories import models_with_a_scale_2_network
from worker.evaluation import register_heif_writer

UPSCALER = [sys.executable, "-m", "cli"]


def run(args, env=None, timeout=300):
    return subprocess.run([*UPSCALER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def test_every_documented_command_exists():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"api", "worker", "beat", "migrate", "dev", "upscale", "submit", "train", "export", "eval"} <= set(commands)


ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "clients" / "python" / "README.md"]
# the service commands an operator writes into units, compose files and manifests: the README's row of each names
# every option it takes (a process manager's command line is read from there, not from --help)
OPERATOR_COMMANDS = ("api", "worker", "worker-health", "beat", "migrate", "wait-for-schema")


def _commands() -> dict[str, argparse.ArgumentParser]:
    """``"keys create" -> its parser``: every command and sub-command of the console script."""
    found = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found[f"{prefix}{name}"] = child
                    walk(f"{prefix}{name} ", child)

    walk("", build_parser())
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings if option.startswith("--")}


def test_every_option_the_docs_show_a_command_with_exists():
    """A command line copied from the docs must not stop at 'unrecognized arguments': each ``--option`` written
    after ``upscaler <command>`` (in one code span or line) is one that command, or the one above it, takes."""
    import re

    commands = _commands()
    unknown = []
    for path in DOCUMENTS:
        for match in re.finditer(r"upscaler ([a-z][a-z-]*(?: [a-z][a-z-]*)?)((?:[^`|\n]|\\\|)*)", path.read_text()):
            words = match[1].split()
            name = " ".join(words) if " ".join(words) in commands else words[0]
            if name not in commands:
                continue  # prose ("upscaler is installed"), not a command line
            known = _options(commands[name]) | _options(commands[name.split()[0]]) | {"--help", "--debug"}
            unknown += [f"{path.relative_to(ROOT)}: upscaler {name} {option}"
                        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", match[2]) if option not in known]
    assert unknown == []


@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_the_readme_names_every_option_of_the_service_commands(command):
    """``upscaler api --threads`` was missing from the README's table: operators sizing gunicorn found it nowhere."""
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `upscaler {command}")
            and line[len(f"| `upscaler {command}"):][:1] in (" ", "`")]
    assert len(rows) == 1, f"README.md has no row (or several) for upscaler {command}"
    assert sorted(option for option in _options(_commands()[command]) - {"--help"} if option not in rows[0]) == []


@pytest.mark.parametrize("model,out_name,fmt", [("residual_sr", "out.png", "PNG"), ("bicubic", "out.jpg", "JPEG")])
def test_upscale_one_shot(tmp_path, model, out_name, fmt):
    source = write_image(tmp_path / "in.png", width=70, height=50)
    result = run(["upscale", str(source), str(tmp_path / out_name), "--scale", "3", "--model", model, "--tile", "48"])
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / out_name) as out:
        assert (out.format, out.size) == (fmt, (210, 150))


def test_upscale_to_a_print_size_reads_it_as_the_api_does_and_writes_the_dpi(tmp_path):
    """`upscale` had no print size: a print shop working locally had to work out the pixels by hand, and the
    output kept the input's DPI times the factor."""
    source = write_image(tmp_path / "in.png", width=40, height=30)
    result = run(["upscale", str(source), str(tmp_path / "print.png"), "--model", "bicubic", "--dpi", "150",
                  "--print-width", "2.54", "--print-unit", "cm"])
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "print.png") as out:
        assert out.size == (150, 113)  # 1 inch at 150 dpi, the aspect kept (112.5 rounded half up)
        assert [round(v) for v in out.info["dpi"]] == [150, 150]


def test_migrate_creates_the_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    result = run(["migrate"], env={"UPSCALER_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "jobs" in inspect(create_engine(url)).get_table_names()


def test_migrate_names_the_database_without_a_password_in_its_query(postgres):
    """libpq takes the password from the URL's query too (``?password=``, as a URL-encoding-free way to pass one):
    the line `upscaler migrate` prints (the migration Job's and compose's logs) carried it in clear."""
    url = f"{postgres.create_database()}?password=hunter2-in-the-query&sslmode=disable"
    result = run(["migrate"], env={"UPSCALER_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert f"127.0.0.1:{postgres.port}/" in result.stdout  # still says which database


@pytest.mark.slow
def test_dev_launcher_runs_the_platform_and_upscales_the_sample(tmp_path, redis_url):
    """With a key in the database, the launcher's client sends UPSCALER_API_KEY (the CLI's documented variable;
    it once sent none and got 401)."""
    database = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'upscaler.db'}"}
    assert run(["migrate"], env=database).returncode == 0
    created = run(["keys", "create", "--name", "me"], env=database)
    env = {**database, "UPSCALER_REDIS_URL": redis_url, "UPSCALER_API_KEY": created.stdout.strip().splitlines()[-1]}
    result = subprocess.run([*UPSCALER, "dev", "--exit", "--scale", "2", "--port", str(free_port()),
                             "--var", str(tmp_path / "var")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    produced = tmp_path / "var" / "results" / "sample_x2.png"
    assert "done in" in result.stdout and str(produced) in result.stdout
    with Image.open(produced) as out:
        assert out.size == (800, 600)
    assert not (tmp_path / "var" / "tmp").exists()  # beat's schedule and the metrics folders went with it


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _line_with(process: subprocess.Popen, text: str, timeout: float) -> str:
    """The first line of ``process``'s output holding ``text``, read as it comes (a thread reads, so a line that
    never comes fails at the deadline instead of blocking)."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if text in seen[-1]:
            return seen[-1]
    raise AssertionError(f"no line with {text!r} within {timeout} s: {seen}")


@pytest.mark.slow
def test_dev_launcher_says_which_key_to_set_and_stops_when_any_process_stops(tmp_path, redis_url):
    """With keys in its database the API refused the launcher's job with a bare 401; a worker or API that died
    left the launcher waiting for ever; its lines came all at once at exit when its output was not a terminal."""
    var = tmp_path / "var"
    database = {"UPSCALER_DATABASE_URL": f"sqlite:///{var / 'upscaler.db'}"}
    assert run(["migrate"], env=database).returncode == 0
    key = run(["keys", "create", "--name", "me"], env=database).stdout.strip().splitlines()[-1]
    env = {**os.environ, **database, "UPSCALER_REDIS_URL": redis_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [*UPSCALER, "dev", "--scale", "2", "--port", str(free_port()), "--var", str(var)]
    refused = subprocess.run([*command, "--exit"], capture_output=True, text=True, timeout=300,
                             env={**env, "UPSCALER_API_KEY": ""}, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "API keys exist in" in refused.stderr and "set UPSCALER_API_KEY" in refused.stderr
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**env, "UPSCALER_API_KEY": key}, cwd=tmp_path)
    try:
        _line_with(launcher, "platform running", timeout=300)  # while it runs: each line as it is printed
        assert launcher.poll() is None and (var / "results" / "sample_x2.png").exists()
        [api] = [pid for pid in _children(launcher.pid)  # `upscaler api` became gunicorn's master (execv)
                 if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        os.kill(api, 9)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1 and "the api process stopped" in stderr, stderr
    assert not (var / "tmp").exists()  # it stopped the rest and cleaned up


def test_a_second_ctrl_c_while_the_launcher_stops_leaves_no_process_behind(tmp_path, redis_url):
    """A second Ctrl-C while `upscaler dev` said "stopping" (a worker's warm shutdown takes seconds) ended it in
    its clean-up loop: the workers and Redis outlived it, orphaned, holding a gigabyte of TensorFlow each."""
    var = tmp_path / "var"
    env = {**os.environ, "UPSCALER_DATABASE_URL": f"sqlite:///{var / 'upscaler.db'}", "UPSCALER_REDIS_URL": redis_url,
           "TF_CPP_MIN_LOG_LEVEL": "3", "UPSCALER_API_KEY": ""}
    launcher = subprocess.Popen([*UPSCALER, "dev", "--scale", "2", "--port", str(free_port()), "--var", str(var)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    groups: list[int] = []
    try:
        _line_with(launcher, "platform running", timeout=300)
        groups = _children(launcher.pid)  # each the leader of its own process group
        launcher.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the API's graceful stop alone takes longer
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=120)
        left = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _alive(pid)
                and _group_of(pid) in groups]
        assert not left, left
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _group_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def test_stopping_a_process_group_leader_takes_what_is_left_of_its_group(tmp_path):
    """A gunicorn worker whose master was killed, stuck in its shutdown and deaf to SIGTERM, outlived
    ``upscaler dev``: the launcher starts the API and workers as group leaders and stops each group whole."""
    from cli.processes import stop

    stuck = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
             "time.sleep(600)")
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; child = subprocess.Popen("
                               f"[sys.executable, '-c', {stuck!r}]); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        assert leader.stdout.readline().strip() == "ready"  # the child ignores SIGTERM from here on
        [child] = _children(leader.pid)
        stop(leader, timeout=5, group=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def _alive(pid: int) -> bool:
    """Running or sleeping: neither gone nor a zombie left for whoever reaps orphans here."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_dev_launcher_refuses_a_var_folder_another_launcher_uses(tmp_path):
    """A second launcher on the same folder emptied the first's temporary folder and shared its Redis data."""
    import fcntl

    var = tmp_path / "var"
    (var / "tmp").mkdir(parents=True)
    (var / "tmp" / "first's").write_text("in use")
    with open(var / ".dev.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        result = run(["dev", "--exit", "--var", str(var)], timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"another upscaler dev uses {var} (pid 4242)" in result.stderr
    assert (var / "tmp" / "first's").exists() and not (var / "logs").exists()


def test_dev_launcher_refuses_a_port_something_else_listens_on(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run(["dev", "--exit", "--port", str(port), "--var", str(tmp_path / "var")], timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"port {port} is in use" in result.stderr and not (tmp_path / "var" / "logs").exists()


@pytest.mark.parametrize("command", ["upscale", "submit"])
@pytest.mark.parametrize("value,says", [("0", "must be 1 or more"), ("101", "must be at most 100")])
def test_a_quality_outside_the_apis_range_is_refused(tmp_path, command, value, says):
    source = write_image(tmp_path / "in.png", width=8, height=8)
    result = run([command, str(source), str(tmp_path / "out.jpg"), "--quality", value], timeout=60)
    assert result.returncode == 2 and f"--quality: {says}, not {value}" in result.stderr


@pytest.mark.parametrize("command,says", [
    (["train", "--arch", "nosuch"], "--arch 'nosuch' is not one of residual_sr, residual_sr_cond"),
    (["train", "--convs", "fancy"], "--convs 'fancy' is not one of plain, rep"),
    (["train", "--batch", "0"], "--batch: must be 1 or more, not 0"),
    (["train", "--validate-every", "0"], "--validate-every: must be 1 or more, not 0"),
    (["train", "--learning-rate", "nan"], "--learning-rate: must be above 0, not nan"),
    (["train", "--init-from", "shared/weights/residual_sr.json"], "takes a shipped network's <name>.weights.h5"),
    (["eval", "--scales", "9"], "--scales: invalid choice: 9"),
    (["eval", "--models", "bicubic", "--limit", "1"], "name a model to measure"),
])
def test_training_and_evaluation_options_are_checked_in_words(tmp_path, command, says):
    """Each was a traceback (KeyError, ZeroDivisionError, a sampler's error) or a table of inf."""
    result = run([*command, "--data", str(tmp_path)] if command[0] == "eval" else
                 [*command, "--run-dir", str(tmp_path / "run"), "--data", str(tmp_path)], timeout=120)
    assert result.returncode in (1, 2) and says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


def test_init_from_weights_without_their_record_is_refused_before_a_run_starts(tmp_path):
    """The record gives the network's shape: weights copied without it failed after TensorFlow loaded."""
    weights = tmp_path / "lonely.weights.h5"
    weights.write_bytes(b"never loaded: refused before")
    result = run(["train", "--init-from", str(weights), "--run-dir", str(tmp_path / "run"), "--data", str(tmp_path)],
                 timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"no such record beside the weights: {tmp_path / 'lonely.json'}" in result.stderr
    assert not (tmp_path / "run").exists()


def test_worker_and_beat_check_settings_and_queues_before_starting_celery():
    """A bad setting is one line (it was a 45-line Celery traceback in every worker, and beat never checked);
    a misspelled queue is refused (the worker idled on a queue nobody publishes to)."""
    for command in (["worker", "--queues", "maintenance", "--concurrency", "1"], ["beat"]):
        result = run(command, env={"UPSCALER_ENV": "prod"}, timeout=60)
        assert (result.returncode, result.stderr.strip()) == \
            (1, f"upscaler {command[0]}: UPSCALER_ENV must be development, production or test"), result.stderr
    typo = run(["worker", "--queues", "maintenance,webhook"], timeout=60)
    assert typo.returncode == 2 and "unknown queue webhook; known: inference, maintenance, webhooks" in typo.stderr


@pytest.mark.parametrize("given,node", [([], "celery@{host}"), (["--name", "light@%h"], "light@{host}")])
def test_a_worker_is_named_as_the_probes_ping_it(monkeypatch, tmp_path, given, node):
    """The compose and Kubernetes probes ping celery@$HOSTNAME: a default written celery@%%h (argparse does not
    %-format defaults) named every worker literally celery@%h, and every probe failed."""
    import socket

    from celery.utils.nodenames import default_nodename, host_format

    from cli.__main__ import main

    started = []
    monkeypatch.setattr(os, "execv", lambda _path, argv: started.append(argv))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the worker's metrics folder, not the checkout
    assert main(["worker", "--queues", "maintenance", *given]) == 0
    (argv,) = started
    name = argv[argv.index("--hostname") + 1]
    assert host_format(default_nodename(name)) == node.format(host=socket.gethostname())


@pytest.mark.parametrize("setting,value", [("UPSCALER_DEFAULT_MODEL", "residual-sr"),
                                           ("UPSCALER_AUTO_ROBUST_MODEL", "residual_sr_conditioned")])
def test_a_default_model_that_is_not_there_stops_the_api_and_workers_at_start(setting, value):
    """A typo made auto vanish: the API reported healthy and answered every request naming no model 422."""
    for command in (["api", "--port", str(free_port())], ["worker", "--queues", "inference"]):
        result = run(command, env={setting: value}, timeout=60)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "UPSCALER_DEFAULT_MODEL" in result.stderr and "is not among the models" in result.stderr
        if setting == "UPSCALER_AUTO_ROBUST_MODEL":
            assert "residual_sr_conditioned, a conditioned network" in result.stderr


def test_requests_the_http_server_refuses_are_problem_json_too(tmp_path):
    """gunicorn answers an over-long request line or too many headers itself, before the API: its HTML page was
    the one error without a problem-details body and a stable code."""
    import http.client

    from cli.processes import wait_for_port

    port = free_port()
    env = {**os.environ, "UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}", "TMPDIR": str(tmp_path),
           "UPSCALER_SECRET_FILE": str(tmp_path / "secret"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    api = subprocess.Popen([*UPSCALER, "api", "--port", str(port), "--workers", "1"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=60, process=api)
        for path, headers, status, code in (("/v1/jobs/" + "a" * 5000, {}, 414, "uri_too_long"),
                                            ("/v1/jobs", {f"X-H{n}": "v" for n in range(120)}, 431,
                                             "headers_too_large")):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            body = json.loads(answer.read())
            connection.close()
            assert (answer.status, answer.getheader("Content-Type"), body["code"]) == (
                status, "application/problem+json", code)
            assert body["request_id"] == answer.getheader("X-Request-Id") and body["status"] == status
    finally:
        api.terminate()
        api.wait(30)


def test_beat_under_json_logs_writes_only_json_and_no_state_where_it_runs(tmp_path, redis_url):
    """Celery's banner is plain text (left out under UPSCALER_LOG_FORMAT=json); its schedule file goes to the
    temporary folder, not the working directory."""
    env = {**os.environ, "UPSCALER_LOG_FORMAT": "json", "UPSCALER_REDIS_URL": redis_url,
           "UPSCALER_SWEEP_INTERVAL": "0.5", "UPSCALER_SECRET_FILE": str(tmp_path / "secret"), "TMPDIR": str(tmp_path)}
    work = tmp_path / "work"
    work.mkdir()
    beat = subprocess.Popen([*UPSCALER, "beat"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        time.sleep(6)
    finally:
        beat.terminate()
        output = beat.communicate(timeout=30)[0]
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # fails on any non-JSON line
    assert any("Sending due task sweep" in line["message"] for line in lines), output
    assert list(work.iterdir()) == []


def test_upscale_many_files_into_a_folder_with_one_bad_file(tmp_path):
    """Folder and files in, OUTDIR/<stem>.<ext> out, the model loaded once, a bad file reported in one line."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", width=40, height=30)
    Image.open(write_image(tmp_path / "b.png", width=36, height=20)).convert("RGB").save(folder / "b.jpg", quality=60)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    register_heif_writer()  # pillow-heif (the dev extra) writes HEIC files
    Image.open(write_image(tmp_path / "d.png", width=30, height=24)).convert("RGB").save(folder / "d.heic", "HEIF")
    extra = write_image(tmp_path / "c.png", width=20, height=20)
    out = tmp_path / "out"
    result = run(["upscale", str(folder), str(extra), str(out), "--scale", "2", "--format", "webp"])
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "a.webp", "b.webp", "c.webp", "d.webp"]
    with Image.open(out / "d.webp") as image:
        assert image.size == (60, 48)
    with Image.open(out / "b.webp") as image:
        assert image.size == (72, 40)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in result.stderr
    assert "1 of 5 file(s) failed" in result.stderr
    assert "residual_sr_cond" in result.stderr + result.stdout  # the JPEG went to the robust network


def test_upscale_checks_each_file_as_the_api_does_before_any_inference(tmp_path):
    """A model without the asked scale was a KeyError traceback that stopped the batch; outputs the encoders or
    the memory limit refuse were found only after the whole inference, or not at all. Each file is now checked
    as the API checks a job (shared.limits.check_job), in one line, and the others go on."""
    models = models_with_a_scale_2_network(tmp_path / "models")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", width=40, height=30)
    wide = write_image(tmp_path / "wide.png", width=2100, height=10)
    env = {"UPSCALER_MODELS_DIR": str(models), "UPSCALER_MAX_WHOLE_OUTPUT_PIXELS": "50000"}

    scales = run(["upscale", str(folder), str(tmp_path / "out"), "--model", "two", "--scale", "4"], env=env)
    limits = run(["upscale", str(wide), str(folder / "a.png"), str(tmp_path / "out"), "--model", "bicubic",
                  "--scale", "8", "--format", "webp"], env=env)

    assert scales.returncode == 1 and "Traceback" not in scales.stderr
    assert scales.stderr.count("model 'two' runs at scales x2; this size needs x4") == 2
    assert limits.returncode == 1 and "Traceback" not in limits.stderr
    assert "webp images cannot exceed 16383 px a side" in limits.stderr  # 16800 px wide
    assert "more than the limit of 50000" in limits.stderr  # a.png: 320x240 made whole
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_upscale_never_replaces_a_file_unless_told(tmp_path):
    """``upscale 'photos/*.png' photos --format jpeg`` replaced the studio's own photos/photo.jpg: a result that
    exists is skipped in a folder (an interrupted run goes on, as submit does), refused as a named output."""
    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "photo.png", width=24, height=16)
    original = write_image(photos / "keep.png", width=8, height=8)
    Image.open(original).convert("RGB").save(photos / "photo.jpg", quality=90)
    kept = (photos / "photo.jpg").read_bytes()

    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.jpg").write_bytes(kept)  # a result of an earlier, interrupted run
    into_its_own_folder = run(["upscale", str(photos / "photo.png"), str(photos / "keep.png"), str(photos),
                               "--format", "jpeg", "--model", "bicubic", "--scale", "2"])
    folder = run(["upscale", str(photos / "photo.png"), str(photos / "keep.png"), str(out), "--format", "jpeg",
                  "--model", "bicubic", "--scale", "2"])
    single = run(["upscale", str(photos / "photo.png"), str(photos / "photo.jpg"), "--model", "bicubic"])
    unchanged = (photos / "photo.jpg").read_bytes() == kept == (out / "photo.jpg").read_bytes()
    replaced = run(["upscale", str(photos / "photo.png"), str(photos / "photo.jpg"), "--model", "bicubic",
                    "--scale", "2", "--overwrite"])

    # files named on their own go into their own folder: the studio's photo.jpg is skipped, not replaced
    assert into_its_own_folder.returncode == 0, into_its_own_folder.stderr
    assert f"skip {photos / 'photo.png'}: {photos / 'photo.jpg'} exists" in into_its_own_folder.stdout
    assert sorted(p.name for p in photos.iterdir()) == [RECORD, "keep.jpg", "keep.png", "photo.jpg", "photo.png"]
    assert folder.returncode == 0, folder.stderr
    assert f"skip {photos / 'photo.png'}: {out / 'photo.jpg'} exists" in folder.stdout
    with Image.open(out / "keep.jpg") as made:
        assert made.size == (16, 16)  # the other file went on
    assert single.returncode == 1 and "exists; --overwrite replaces it" in single.stderr
    assert unchanged
    assert replaced.returncode == 0, replaced.stderr
    with Image.open(photos / "photo.jpg") as made:
        assert made.size == (48, 32)


def test_upscale_refuses_bad_sizes_and_a_file_as_output_folder_in_one_line(tmp_path):
    source = write_image(tmp_path / "a.png", width=8, height=8)
    for width in ("0", "-10", "70000"):  # 0 silently meant x4; -10 reached TensorFlow
        result = run(["upscale", str(source), str(tmp_path / "o.png"), "--width", width])
        assert result.returncode == 2 and "--width" in result.stderr and "Traceback" not in result.stderr
    blocker = tmp_path / "results"
    blocker.write_text("a file")
    result = run(["upscale", str(source), str(tmp_path / "a2.png"), str(blocker)])
    assert result.returncode == 2 and result.stderr.count("upscaler upscale: ") == 1
    assert result.stderr.count("is a file; name an output folder") == 1


def test_upscale_many_files_all_good_exits_zero(tmp_path):
    sources = [write_image(tmp_path / f"{name}.png", width=24, height=16) for name in ("x", "y")]
    result = run(["upscale", *map(str, sources), str(tmp_path / "out"), "--scale", "3", "--denoise", "0.4"])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD, "x.png", "y.png"]
    assert "strength 0.40" in result.stderr + result.stdout


def test_keys_create_list_revoke(tmp_path):
    env = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    assert run(["migrate"], env=env).returncode == 0
    created = run(["keys", "create", "--name", "acme", "--max-active", "3"], env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("upk_") and len(key) > 40
    assert run(["keys", "create", "--name", "acme"], env=env).returncode == 1  # one key per name
    listed = run(["keys", "list"], env=env).stdout
    assert "acme" in listed and key[:12] in listed and key not in listed
    rotated = run(["keys", "rotate", "acme"], env=env)
    assert rotated.returncode == 0 and rotated.stdout.strip().splitlines()[-1] not in (key, "")
    assert run(["keys", "revoke", "acme"], env=env).returncode == 0
    again_revoked = run(["keys", "revoke", "acme"], env=env)
    assert again_revoked.returncode == 1  # its line lacked the command's name every other error line has
    assert again_revoked.stderr.strip() == "upscaler keys: no active key named 'acme'"
    assert run(["keys", "rotate", "acme"], env=env).returncode == 1  # nothing active to rotate
    again = run(["keys", "create", "--name", "acme"], env=env)  # a revoked tenant may get a new key
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1].startswith("upk_")
    reserved = run(["keys", "create", "--name", "public"], env=env)
    assert reserved.returncode == 2 and "reserved" in reserved.stderr


def test_keys_set_limits_keeps_the_key(tmp_path):
    """A customer's new plan changes its key's limits, not its key (that took revoke + create)."""
    env = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    assert run(["migrate"], env=env).returncode == 0
    key = run(["keys", "create", "--name", "acme", "--rate-limit", "60"], env=env).stdout.strip().splitlines()[-1]
    changed = run(["keys", "set-limits", "acme", "--rate-limit", "default", "--daily-megapixels", "500"], env=env)
    assert changed.returncode == 0, changed.stderr
    assert "rate/min default, active default, MP/day 500" in changed.stdout
    again = run(["keys", "set-limits", "acme", "--max-active", "3"], env=env)  # the others stay
    assert again.returncode == 0 and "rate/min default, active 3, MP/day 500" in again.stdout
    listed = run(["keys", "list"], env=env).stdout
    assert key[:12] in listed  # the same key
    assert run(["keys", "set-limits", "acme", "--rate-limit", "-1"], env=env).returncode == 2
    assert run(["keys", "set-limits", "nobody", "--rate-limit", "1"], env=env).returncode == 1


def test_a_keys_limit_past_its_column_is_a_usage_error_not_a_traceback(tmp_path):
    """The limits are 32-bit columns: 2**31 passed the command line and failed the insert on PostgreSQL (integer out
    of range), a 20-digit one on SQLite too, each a traceback after the command had seemed to accept it."""
    env = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    assert run(["migrate"], env=env).returncode == 0
    for option, value in (("--daily-megapixels", str(2**31)), ("--rate-limit", "9" * 20)):
        refused = run(["keys", "create", "--name", "acme", option, value], env=env)
        assert refused.returncode == 2 and "at most 2147483647" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert "acme" not in run(["keys", "list"], env=env).stdout  # nothing was created
    created = run(["keys", "create", "--name", "acme", "--daily-megapixels", str(2**31 - 1)], env=env)
    assert created.returncode == 0, created.stderr
    past = run(["keys", "set-limits", "acme", "--max-active", str(2**31)], env=env)
    assert past.returncode == 2 and "at most 2147483647" in past.stderr


def test_keys_webhook_secret_prints_a_known_tenants_own(tmp_path):
    """What an operator hands a customer for its receivers: its own secret, the one the API serves it."""
    from shared.settings import Settings
    from shared.tenants import env_tenant
    from shared.webhooks import signing_secret

    env = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}", "UPSCALER_SECRET_KEY": "s" * 32,
           "UPSCALER_WEBHOOK_SECRET": "", "UPSCALER_API_KEYS": "upk_bootstrap"}
    assert run(["migrate"], env=env).returncode == 0
    assert run(["keys", "create", "--name", "acme"], env=env).returncode == 0
    settings = Settings(secret_key="s" * 32)
    for tenant in ("acme", "public", env_tenant("upk_bootstrap")):
        printed = run(["keys", "webhook-secret", tenant], env=env)
        assert (printed.returncode, printed.stdout.strip()) == (0, signing_secret(settings, tenant)), printed.stderr
    typo = run(["keys", "webhook-secret", "acne"], env=env)
    assert (typo.returncode, typo.stdout) == (1, "") and "no tenant named 'acne'" in typo.stderr
    # where the API's development secret is not (another folder): said, never made up (nor a stray file made)
    elsewhere = {**env, "UPSCALER_SECRET_KEY": "", "UPSCALER_SECRET_FILE": str(tmp_path / "nowhere" / "secret")}
    missing = run(["keys", "webhook-secret", "acme"], env=elsewhere)
    assert (missing.returncode, missing.stdout) == (1, "") and "no development secret at" in missing.stderr
    assert not (tmp_path / "nowhere").exists()
    rotated = run(["keys", "rotate-webhook-secret", "acme", "--grace-hours", "0"], env=env)
    assert rotated.returncode == 0 and "no longer signs" in rotated.stdout, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("whsec_") and new != signing_secret(settings, "acme")
    assert run(["keys", "webhook-secret", "acme"], env=env).stdout.strip() == new  # the current one, shown
    for tenant in ("public", "acne"):  # no key row to keep a version on: said, nothing printed
        refused = run(["keys", "rotate-webhook-secret", tenant], env=env)
        assert (refused.returncode, refused.stdout) == (1, "") and "no key named" in refused.stderr
    # where the API's development secret is not: refused before anything is rotated (it rotated, then printed a
    # secret derived from a secret file it made up)
    away = run(["keys", "rotate-webhook-secret", "acme"], env=elsewhere)
    assert (away.returncode, away.stdout) == (1, "") and "no development secret at" in away.stderr
    assert not (tmp_path / "nowhere").exists()
    assert run(["keys", "webhook-secret", "acme"], env=env).stdout.strip() == new  # not rotated again
    forever = run(["keys", "rotate-webhook-secret", "acme", "--grace-hours", "100000000"], env=env)
    assert (forever.returncode, forever.stdout) == (2, "") and "at most 8760" in forever.stderr  # not a traceback
    assert "Traceback" not in forever.stderr
    assert run(["keys", "webhook-secret", "acme"], env=env).stdout.strip() == new


@pytest.mark.slow
def test_submit_many_waits_downloads_skips_done_and_lists(api_server, settings, tmp_path):
    """`upscaler submit` over real HTTP with a real worker: a folder and a file, progress, results named
    <stem>.<ext>, a second run skips what is done; `jobs list` shows them; errors are one line."""
    from tests.workers import start_worker, stop_worker

    base, _ = api_server
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", width=40, height=30)
    write_image(folder / "b.png", width=30, height=20)
    single = write_image(tmp_path / "c.png", width=20, height=20)
    env = {"UPSCALER_API_URL": base, "UPSCALER_API_KEY": ""}
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        first = run(["submit", str(folder), str(single), "--wait", "--output-dir", str(tmp_path / "out"),
                     "--model", "bicubic", "--width", "64", "--concurrency", "2"], env=env)
        again = run(["submit", str(folder), str(single), "--wait", "--output-dir", str(tmp_path / "out"),
                     "--model", "bicubic", "--width", "64"], env=env)
        listed = run(["jobs", "list"], env=env)
    finally:
        stop_worker(worker)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD, "a.png", "b.png", "c.png"]
    with Image.open(tmp_path / "out" / "a.png") as out:
        assert out.size == (64, 48)
    assert again.returncode == 0 and again.stdout.count("skip ") == 3
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 3
    # `jobs download` wrote over anything (the user's own input) under any suffix (WebP bytes in x.jpg)
    job_id, kept = listed.stdout.split()[0], single.read_bytes()
    over_input = run(["jobs", "download", job_id, str(single)], env=env)
    wrong_suffix = run(["jobs", "download", job_id, str(tmp_path / "x.jpg")], env=env)
    into_folder = [run(["jobs", "download", job_id, str(tmp_path / "got") + "/"], env=env) for _ in range(2)]
    assert over_input.returncode == 1 and "exists; --overwrite replaces it" in over_input.stderr
    assert single.read_bytes() == kept
    assert wrong_suffix.returncode == 1 and "names a jpeg file but the result is png" in wrong_suffix.stderr
    assert into_folder[0].returncode == 0, into_folder[0].stderr  # the result's own name, in a new folder
    assert into_folder[1].returncode == 1 and "exists; --overwrite replaces it" in into_folder[1].stderr
    fresh = run(["jobs", "download", job_id, str(tmp_path / "x.png")], env=env)
    assert fresh.returncode == 0 and (tmp_path / "x.png").stat().st_size > 0
    deleted = run(["jobs", "delete", job_id], env=env)  # its images now, not at retention
    assert deleted.returncode == 0 and deleted.stdout.startswith(f"{job_id} succeeded, images deleted 20")
    gone = run(["jobs", "download", job_id, str(tmp_path / "y.png")], env=env)
    assert gone.returncode == 1 and "result_expired" in gone.stderr and not (tmp_path / "y.png").exists()


def test_jobs_usage_prints_the_keys_limits_and_use(api_server, db_session, tmp_path):
    """`upscaler jobs usage` over real HTTP: the key's own limits and the deployment's where it has none, a job
    submitted (no worker: it stays queued) and its megapixels, charged at submit."""
    import uuid

    from shared.tenants import create_key

    base, _ = api_server
    name = f"cli-usage-{uuid.uuid4().hex[:8]}"
    _, key = create_key(db_session, name, max_active=3, daily_megapixels=50)
    db_session.commit()
    env = {"UPSCALER_API_URL": base, "UPSCALER_API_KEY": key}
    sent = run(["submit", str(write_image(tmp_path / "a.png", width=100, height=80)), "--model", "bicubic",
                "--scale", "2"], env=env)  # 200x160 out: 0.032 MP
    assert sent.returncode == 0, sent.stderr
    shown = run(["jobs", "usage"], env=env)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.replace("active jobs", "active").splitlines())
    assert lines["tenant"] == name and lines["requests"] == "600 a minute"
    assert lines["active"] == "1 queued, 0 running, limit 3"
    assert lines["megapixels"].startswith("0.03 used today of 50; the day ends ")
    assert lines["megapixels"].endswith(" 00:00 UTC")


def test_cli_errors_are_one_line_and_version_prints(tmp_path):
    down = run(["submit", str(write_image(tmp_path / "a.png")), "--api", "http://127.0.0.1:9"],
               env={"UPSCALER_API_KEY": ""})
    assert down.returncode == 1 and "Traceback" not in down.stderr and "cannot reach" in down.stderr
    missing = run(["jobs", "get", "x", "--help"])
    assert missing.returncode == 0
    version = run(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("upscaler ")


def test_results_of_inputs_sharing_a_stem_get_names_apart(tmp_path):
    from cli.upscale import plan

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("photo.jpg", "photo.png", "other.png"):
        write_image(folder / name, width=8, height=8)
    out = tmp_path / "out"
    assert {src.name: dst.name for src, dst, _ in plan([folder, out], None)[0]} == \
        {"photo.jpg": "photo_jpg.png", "photo.png": "photo_png.png", "other.png": "other.png"}
    twin = tmp_path / "twin"
    twin.mkdir()
    write_image(twin / "other.png", width=8, height=8)
    with pytest.raises(UsageError, match=r"same result file: .*other\.png, .*other\.png"):
        plan([folder, twin, out], None)  # one name in two folders: refused before anything runs


def test_a_single_output_is_written_in_the_format_its_name_says_or_refused(tmp_path):
    from cli.upscale import plan

    source = write_image(tmp_path / "in.png", width=8, height=8)
    assert [fmt for *_, fmt in plan([source, tmp_path / "a.JPEG"], None)[0]] == ["jpeg"]
    assert [fmt for *_, fmt in plan([source, tmp_path / "a.tiff"], None)[0]] == ["tiff"]
    with pytest.raises(UsageError, match=r"cannot write \.heic"):
        plan([source, tmp_path / "a.heic"], None)  # it once wrote PNG bytes under that name
    assert [fmt for *_, fmt in plan([source, tmp_path / "a.heic"], "png")[0]] == ["png"]  # asked for explicitly


def test_a_missing_input_is_said_plainly_and_creates_nothing(tmp_path):
    result = run(["upscale", str(tmp_path / "missing.jpg"), str(tmp_path / "out.png"), "--model", "bicubic"])
    assert result.returncode == 1 and "missing.jpg: no such file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.png").exists()  # not even a folder


def test_local_upscales_refuse_what_the_api_refuses_in_its_words(tmp_path):
    """A text file named .png, a format the API does not take and a picture over the pixel limit: each one line
    in the API's words (the CLI once decoded what the API refuses, and said 'corrupt' of a text file)."""
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "pixels.png", "PPM")  # a PPM named .png
    write_image(tmp_path / "big.png", width=120, height=100)
    result = run(["upscale", str(tmp_path / "notes.png"), str(tmp_path / "pixels.png"), str(tmp_path / "big.png"),
                  str(tmp_path / "out"), "--model", "bicubic", "--scale", "2"],
                 env={"UPSCALER_MAX_INPUT_PIXELS": "10000"})
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert result.returncode == 1 and len(errors) == 3 and "Traceback" not in result.stderr
    assert "big.png: the image has 120x100 = 12000 pixels; the limit is 10000" in errors[0]
    assert "notes.png: the file is not a readable image" in errors[1]
    assert "pixels.png: PPM images are not accepted" in errors[2]


def test_a_denoise_strength_for_a_model_that_takes_none_is_refused_as_the_api_refuses_it(tmp_path):
    """It was silently dropped: the file ran without the strength asked for."""
    source = write_image(tmp_path / "in.png", width=24, height=16)
    result = run(["upscale", str(source), str(tmp_path / "out.png"), "--model", "residual_sr", "--denoise", "0.5"])
    assert result.returncode == 2 and "takes no --denoise" in result.stderr and "residual_sr_cond" in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_a_count_below_one_is_a_usage_error_not_a_traceback():
    result = run(["jobs", "list", "--limit", "-1"])
    assert result.returncode == 2 and "must be 1 or more" in result.stderr and "Traceback" not in result.stderr
    result = run(["keys", "create", "--name", "x", "--rate-limit", "-5"])
    assert result.returncode == 2 and "must be 0 or more" in result.stderr


def test_gunicorn_writes_json_lines_when_the_platform_does(monkeypatch, capsys):
    """gunicorn's loggers do not reach the root logger: under UPSCALER_LOG_FORMAT=json its access lines were
    the only plain-text lines in the stream."""
    import datetime
    import json
    import types

    from gunicorn.config import Config

    from cli.gunicorn_logs import Logger

    monkeypatch.setenv("UPSCALER_LOG_FORMAT", "json")
    config = Config()
    config.set("accesslog", "-")
    logger = Logger(config)
    logger.access_log.info('127.0.0.1 "GET /v1/jobs HTTP/1.1" 200')
    logger.error_log.warning("worker timeout")
    answer = types.SimpleNamespace(status="202 ACCEPTED", sent=321, headers=[("X-Request-Id", "req-7f3a")])
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/v1/jobs", "PATH_INFO": "/v1/jobs", "SERVER_PROTOCOL": "HTTP/1.1"}
    logger.access(answer, types.SimpleNamespace(headers=[]), environ, datetime.timedelta(milliseconds=12))
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert {(line["logger"], line["message"]) for line in lines} >= {
        ("gunicorn.access", '127.0.0.1 "GET /v1/jobs HTTP/1.1" 200'), ("gunicorn.error", "worker timeout")}
    # the request id as a field of its own, as on the request's other lines (it was only in the message text)
    [submitted] = [line for line in lines if "POST /v1/jobs" in line["message"]]
    assert submitted["request_id"] == "req-7f3a"


def test_the_api_process_logs_its_own_lines_in_the_default_text_format(monkeypatch, capsys):
    """Logging was set up only for JSON: under the default text format "API ready" (INFO) was dropped and warnings
    came without time, level or logger."""
    import logging

    from gunicorn.config import Config

    from cli.gunicorn_logs import Logger

    root = logging.getLogger()
    kept = root.handlers[:], root.level
    monkeypatch.setenv("UPSCALER_LOG_FORMAT", "text")
    try:
        Logger(Config())
        logging.getLogger("api.app").info("API ready (database sqlite, storage local)")
        logging.getLogger("api.quotas").warning("rate limit not checked (Redis unavailable)")
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert " INFO api.app: API ready (database sqlite, storage local)" in err
    assert " WARNING api.quotas: rate limit not checked (Redis unavailable)" in err


def test_results_are_never_written_over_their_inputs(tmp_path):
    """`upscale photos photos` replaced every PNG by its upscale; `submit photo.png --wait` in the photo's folder
    took the photo for its result and skipped it (exit 0, nothing done)."""
    from cli.upscale import plan

    folder = tmp_path / "photos"
    folder.mkdir()
    original = write_image(folder / "other.png", width=8, height=8)
    kept = original.read_bytes()
    with pytest.raises(FileNotFoundError, match=r"outside the output folder"):
        plan([folder, folder], None)  # its files are taken for results, not inputs
    with pytest.raises(UsageError, match="would overwrite the input"):
        plan([original, original], None)
    submitted = subprocess.run([*UPSCALER, "submit", "other.png", "--wait", "--api", "http://127.0.0.1:9"],
                               capture_output=True, text=True, timeout=60, cwd=folder,
                               env={**os.environ, "UPSCALER_API_KEY": ""})
    assert submitted.returncode == 2 and "upscaler submit: the result of other.png would overwrite the input" in \
        submitted.stderr
    assert original.read_bytes() == kept


def test_file_names_with_brackets_are_files_not_patterns(tmp_path):
    from cli.files import expand

    bracketed, plain = write_image(tmp_path / "photo[1].png"), write_image(tmp_path / "photo1.png")
    assert expand([bracketed]) == [bracketed]
    assert expand([tmp_path / "photo?.png"]) == [plain]  # a pattern that names no file is still a pattern


@pytest.mark.parametrize("arguments,says", [
    (["--output", "big.jpg"], "add --wait"),
    (["--output-dir", "out"], "add --wait"),
    (["EXTRA", "--wait", "--output", "big.jpg"], "--output names one result"),
    (["--wait", "--output", "big.jpg", "--format", "png"], "names a jpeg file but --format is png"),
])
def test_submit_refuses_options_it_would_ignore(tmp_path, arguments, says):
    source = write_image(tmp_path / "in.png")
    arguments = [str(write_image(tmp_path / "two.png")) if a == "EXTRA" else a for a in arguments]
    result = run(["submit", str(source), *arguments, "--api", "http://127.0.0.1:9"], env={"UPSCALER_API_KEY": ""})
    assert result.returncode in (1, 2) and says in result.stderr, result.stderr


def test_submit_of_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(["submit", str(tmp_path / "empty")], env={"UPSCALER_API_KEY": ""})
    assert result.returncode == 1 and "no images in" in result.stderr


def test_jobs_takes_the_api_before_or_after_its_action():
    parser = build_parser()
    assert parser.parse_args(["jobs", "list", "--api", "http://127.0.0.1:9"]).api == "http://127.0.0.1:9"
    assert parser.parse_args(["jobs", "--api", "http://127.0.0.1:8", "get", "ID"]).api == "http://127.0.0.1:8"
    assert parser.parse_args(["jobs", "get", "ID"]).api is None


@pytest.mark.slow
def test_ctrl_c_stops_watching_and_names_the_jobs_left_running(api_server, tmp_path):
    """No worker runs: the job stays queued. One Ctrl-C ended nothing (the pool waited for every watch, up to an
    hour); it now stops at once, leaves no partial file and says which jobs keep running."""
    import signal

    base, _ = api_server
    source = write_image(tmp_path / "a.png", width=20, height=20)
    process = subprocess.Popen([*UPSCALER, "submit", str(source), "--wait", "--model", "bicubic", "--output-dir",
                                str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "UPSCALER_API_URL": base, "UPSCALER_API_KEY": ""},
                               # as from a terminal: a harness started in the background ignores SIGINT, and its
                               # children would inherit that (Python then installs no KeyboardInterrupt)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(_queued_jobs(base)):
        time.sleep(0.2)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    (job_id,) = _queued_jobs(base)
    assert f"jobs left on the server: {source} ({job_id}) (run the same `upscaler submit` again" in stderr
    assert not list(tmp_path.rglob("*.part"))


def _queued_jobs(base: str) -> list[str]:
    import requests

    return [job["id"] for job in requests.get(f"{base}/v1/jobs", timeout=5).json()["data"]
            if job["status"] == "queued"]


def test_submitting_the_same_image_again_finds_its_job_unless_that_one_failed(api_server, db_session, tmp_path):
    """A run cut off while it waited (the API restarted) and run again submitted, and charged, every image twice;
    a failed job must still be retried by a new run."""
    from shared.models import Job

    base, _ = api_server
    source = write_image(tmp_path / "a.png", width=20, height=20)
    env = {"UPSCALER_API_URL": base, "UPSCALER_API_KEY": ""}

    def submitted(*extra: str) -> str:
        result = run(["submit", str(source), "--model", "bicubic", *extra], env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("\t")[1]

    first = submitted()
    assert submitted() == first
    assert submitted("--scale", "2") != first  # other options: another job
    db_session.query(Job).filter_by(id=first).update({"status": "failed", "error_code": "internal_error"})
    db_session.commit()
    retry = submitted()
    assert retry not in (first, "")
    assert submitted() == retry  # the retry is found again: each run after a failure made yet another job
    db_session.query(Job).filter_by(id=retry).update({"status": "canceled"})
    db_session.commit()
    third = submitted()
    assert third not in (first, retry, "") and submitted() == third
    assert db_session.query(Job).count() == 4  # first, its retry, the retry's retry, and the --scale 2 one


def test_api_and_worker_flags_reach_the_processes_they_start(monkeypatch):
    """The app caps requests waiting on a job at half UPSCALER_API_THREADS: a --threads that differed left waits
    able to take every gunicorn thread. A second worker on a host could not be given its own metrics port. A port
    of 70000 was a gunicorn traceback."""
    import argparse

    from cli import services

    started = []
    monkeypatch.setattr(services.os, "execv", lambda path, argv: started.append(argv))
    monkeypatch.setenv("UPSCALER_API_THREADS", "8")
    for written in ("UPSCALER_WORKER_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(written, "")  # recorded, so what the commands write is undone after the test
        monkeypatch.delenv(written)
    services.run_api(argparse.Namespace(host=None, port=None, workers=1, threads=3))
    assert started[-1][started[-1].index("--threads") + 1] == "3" and os.environ["UPSCALER_API_THREADS"] == "3"
    services.run_worker(argparse.Namespace(queues="webhooks", concurrency=1, beat=False, name="second@%h",
                                           loglevel="INFO", metrics_port=19810))
    assert os.environ["UPSCALER_WORKER_METRICS_PORT"] == "19810" and "second@%h" in started[-1]
    services.run_worker(argparse.Namespace(queues="webhooks", concurrency=1, beat=False, name="third@%h",
                                           loglevel="INFO", metrics_port=0))
    assert os.environ["UPSCALER_WORKER_METRICS_PORT"] == "0"  # this one serves none, whatever the host's setting
    for command, says in ((["api", "--port", "70000"], "must be at most 65535 (a TCP port)"),
                          (["worker", "--metrics-port", "-1"], "must be 1 or more")):
        refused = run(command)
        assert refused.returncode == 2 and says in refused.stderr and command[1] in refused.stderr, refused.stderr



def test_the_api_and_workers_warn_at_start_where_webhooks_may_reach_the_private_network(monkeypatch, capsys):
    """A variable carried over from a shell or an old .env opened every customer's webhook_url and image_url to
    the deployment's own network, without a word."""
    import argparse

    from cli import services

    monkeypatch.setattr(services.os, "execv", lambda path, argv: None)
    monkeypatch.setattr(services, "_multiprocess_metrics_dir", lambda kind: None)
    worker = argparse.Namespace(queues="webhooks", concurrency=1, beat=False, name="w@%h", loglevel="INFO",
                                metrics_port=None)
    production = {"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": "s" * 32,
                  "UPSCALER_PUBLIC_URL": "https://upscale.example.com", "UPSCALER_API_KEYS": "k" * 24}
    for name, value in production.items():
        monkeypatch.setenv(name, value)
    for allowed, warned in (("false", False), ("true", True)):
        monkeypatch.setenv("UPSCALER_WEBHOOK_ALLOW_PRIVATE", allowed)
        services.run_api(argparse.Namespace(host=None, port=None, workers=1, threads=3))
        services.run_worker(worker)
        said = capsys.readouterr().err
        assert said.count("warning: UPSCALER_WEBHOOK_ALLOW_PRIVATE is on") == (2 if warned else 0), said
    monkeypatch.setenv("UPSCALER_ENV", "development")  # where the tests and a laptop's receivers need it
    services.run_worker(worker)
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setenv("UPSCALER_ENV", "production")
    monkeypatch.setenv("UPSCALER_LOG_FORMAT", "json")  # one JSON object per line, this caution's too
    services.run_api(argparse.Namespace(host=None, port=None, workers=1, threads=3))
    services.run_worker(worker)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["message"][:33]) for line in lines] == [
        ("warning", "UPSCALER_WEBHOOK_ALLOW_PRIVATE is")] * 2


def test_each_launch_scans_the_temporary_folder_for_leftovers_once(monkeypatch):
    """A worker launched with its beat scanned it twice (for its metrics folder and for the schedule), as did the
    beat alone with none."""
    import argparse

    from cli import services
    from worker import scratch

    scans, started = [], []
    monkeypatch.setattr(scratch, "remove_orphaned", lambda: scans.append(1) or 0)
    monkeypatch.setattr(services.os, "execv", lambda path, argv: started.append(argv))
    for written in ("UPSCALER_WORKER_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(written, "")  # recorded, so what the commands write is undone after the test
        monkeypatch.delenv(written)
    services.run_worker(argparse.Namespace(queues="webhooks", concurrency=1, beat=True, name="w@%h",
                                           loglevel="INFO", metrics_port=0))
    services.run_beat(argparse.Namespace(loglevel="INFO"))
    assert len(started) == 2 and "--beat" in started[0] and "--schedule" in started[1]
    assert len(scans) == 2

def test_an_upscale_stopped_mid_file_leaves_no_partial_result_to_be_skipped_later(tmp_path, monkeypatch):
    """Results were written in place: Ctrl-C during an encode left a truncated file, which the next run (skipping
    results that exist) would have kept for good."""
    from cli.__main__ import build_parser
    from worker import render as rendering

    source = write_image(tmp_path / "a.png", width=24, height=16)
    out = tmp_path / "out"

    def interrupted(source, destination, *args, **kwargs):
        destination.write_bytes(b"\x89PNG half of it")
        raise KeyboardInterrupt

    args = build_parser().parse_args(["upscale", str(source), str(out), "--model", "bicubic", "--scale", "2"])
    monkeypatch.setattr(rendering, "render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    assert args.func(args) == 0
    with Image.open(out / "a.png") as made:
        assert made.size == (48, 32)


def test_dev_and_client_commands_say_a_bad_setting_in_one_line(tmp_path):
    """An unreachable UPSCALER_REDIS_URL left the launcher's job "queued (0%)" for an hour; --port 70000 and a key
    holding two lines were tracebacks."""
    no_broker = run(["dev", "--exit", "--port", str(free_port()), "--var", str(tmp_path / "var")],
                    env={"UPSCALER_REDIS_URL": "redis://127.0.0.1:9/0"}, timeout=120)
    assert no_broker.returncode == 1 and "no Redis answers at redis://127.0.0.1:9/0" in no_broker.stderr
    assert "Traceback" not in no_broker.stderr
    port = run(["dev", "--port", "70000"])
    assert port.returncode == 2 and "(a TCP port)" in port.stderr
    two_lines = run(["jobs", "list", "--api", "http://127.0.0.1:9"], env={"UPSCALER_API_KEY": "upk_a\nupk_b"})
    assert two_lines.returncode == 1 and "control characters" in two_lines.stderr
    assert "Traceback" not in two_lines.stderr


def test_submit_wait_waits_for_a_slot_under_the_keys_active_job_limit(tmp_path):
    """A key allowed one active job and --concurrency 2: the second file was an error once the client's own three
    retries (3 x Retry-After 10 s) ran out while the first job still ran; with --wait it now waits for the slot this
    run's own jobs free. A loopback API answers 429 too_many_active_jobs five times, then takes the job."""
    import threading

    from upscaler_client import Client, RateLimited

    from cli.submit import create_when_a_slot_frees
    from tests.test_sdk import _FakeApi

    busy = (429, {"Retry-After": "0.05"}, b'{"code": "too_many_active_jobs", "detail": "1 jobs are queued"}')
    fake = _FakeApi([busy] * 5 + [(202, {}, json.dumps({"id": "j2", "status": "queued", "progress": 0,
                                                            "model": "bicubic", "input": {}, "output": {}}).encode())])
    source = write_image(tmp_path / "b.png", width=8, height=8)
    try:
        client = Client(fake.base, "", max_retries=0)
        job = create_when_a_slot_frees(client, source, {"model": "bicubic"}, threading.Event())
        assert job.id == "j2" and len(fake.requests) == 6
        quota = _FakeApi([(429, {"Retry-After": "3600"}, b'{"code": "quota_exceeded", "detail": "day used"}')])
        with pytest.raises(RateLimited):  # any other 429 is the file's error, at once
            create_when_a_slot_frees(Client(quota.base, "", max_retries=0), source, {}, threading.Event())
        quota.close()
    finally:
        fake.close()


def test_submit_wait_says_once_that_it_waits_for_a_job_slot(tmp_path, capsys):
    """A limit held by jobs from elsewhere (queued, no worker running) kept `submit --wait` waiting without a word,
    forever. It still waits, and the run's first file to wait says so, with the API's count, once."""
    import threading

    from upscaler_client import Client

    from cli.submit import create_when_a_slot_frees
    from tests.test_sdk import _FakeApi

    busy = (429, {"Retry-After": "0.05"}, b'{"code": "too_many_active_jobs", "detail": "3 jobs are queued or '
                                          b'running, the limit is 3"}')
    made = (202, {}, json.dumps({"id": "j2", "status": "queued", "progress": 0, "model": "bicubic", "input": {},
                                 "output": {}}).encode())
    fake = _FakeApi([busy, busy, made])
    source, said = write_image(tmp_path / "b.png", width=8, height=8), threading.Lock()
    try:
        client = Client(fake.base, "", max_retries=0)
        assert create_when_a_slot_frees(client, source, {}, threading.Event(), said).id == "j2"
        fake.answers = [busy, made]  # another file of the same run
        assert create_when_a_slot_frees(client, source, {}, threading.Event(), said).id == "j2"
    finally:
        fake.close()
    err = capsys.readouterr().err
    assert err == "upscaler submit: waiting for a free job slot (3 jobs are queued or running, the limit is 3)\n"


def test_jobs_and_submit_error_lines_name_the_request_id(tmp_path, capsys):
    """docs/errors.md says to quote request_id to the operator; the CLI's error lines never showed it."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi

    fake = _FakeApi([(404, {}, b'{"code": "not_found", "detail": "no job", "request_id": "req-404"}'),
                     (422, {"X-Request-Id": "req-422"}, b'{"code": "invalid_parameter", "detail": "scale: no"}')])
    try:
        assert main(["jobs", "get", "nope", "--api", fake.base, "--api-key", ""]) == 1
        source = write_image(tmp_path / "a.png", width=8, height=8)
        assert main(["submit", str(source), "--api", fake.base, "--api-key", ""]) == 1
    finally:
        fake.close()
    err = capsys.readouterr().err.splitlines()
    assert err == ["upscaler jobs: 404 not_found: no job [request_id=req-404]",
                   f"error: {source}: 422 invalid_parameter: scale: no [request_id=req-422]"]


def test_submit_wait_says_a_canceled_job_and_a_wrong_key_in_plain_words(tmp_path, capsys):
    """A job canceled on the server was "error: a.png: job j1 canceled: canceled:  (job j1)"; a wrong key ended with
    "jobs left on the server: none (run the same `upscaler submit` again to pick them up ...)", which a rerun with
    the same key cannot do."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi, _job

    source = write_image(tmp_path / "a.png", width=8, height=8)
    wait = ["submit", str(source), "--wait", "--output-dir", str(tmp_path / "out"), "--api-key", "wrong"]
    fake = _FakeApi([(201, {}, _job("queued")), (200, {}, _job("canceled"))])
    try:
        assert main([*wait, "--api", fake.base]) == 1
    finally:
        fake.close()
    assert capsys.readouterr().err.splitlines() == [f"error: {source}: job j1 canceled", "1 of 1 job(s) failed"]
    fake = _FakeApi([(401, {}, b'{"code": "unauthorized", "detail": "send a valid API key"}')])
    try:
        assert main([*wait, "--api", fake.base]) == 1
    finally:
        fake.close()
    assert capsys.readouterr().err.splitlines() == [
        "upscaler submit: 401 unauthorized: send a valid API key",
        "1 of 1 file(s) not finished: no job of this run is left running on the server"]


def test_submit_wait_ends_when_the_api_goes_away_and_says_which_jobs_are_left(tmp_path, capsys):
    """The API went away mid-run: one file's submit could not connect and stopped the run, but the file whose job
    was being watched heard no answer to stop on and sat silent for the wait's hour, then counted as failed with
    the file never submitted ("2 of 2 job(s) failed"). A loopback API takes a.png's job, then answers its polls
    503, and drops b.png's submit: the run ends, exit 1, naming a.png's job as left on the server."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: dict, **headers: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json",
                                "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if b'filename="b.png"' in body:
                self.close_connection = True  # no answer: the client cannot connect, as to an API gone away
                return
            self.answer(202, {"id": "ja", "status": "queued", "progress": 0, "model": "bicubic", "input": {},
                              "output": {}})

        def do_GET(self):
            self.answer(503, {"code": "service_unavailable", "detail": "restarting"}, **{"Retry-After": "0.2"})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files = [write_image(tmp_path / name, width=8, height=8) for name in ("a.png", "b.png")]
    args = build_parser().parse_args(["submit", *map(str, files), "--wait", "--concurrency", "2", "--output-dir",
                                      str(tmp_path / "out"), "--api", f"http://127.0.0.1:{server.server_address[1]}"])
    ended: list[int] = []
    run_thread = threading.Thread(target=lambda: ended.append(args.func(args)), daemon=True)
    try:
        run_thread.start()
        run_thread.join(120)  # a guard, not a timing: the watch waited for its hour
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert ended == [1], err
    assert "upscaler submit: " in err and "2 of 2 file(s) not finished" in err, err  # b never submitted, a not done
    assert f"{files[0]} (ja)" in err and str(files[1]) not in err.split("not finished")[1]
    assert "failed" not in err


def test_submit_wait_of_one_file_stops_when_the_api_answers_no_poll_for_a_while(tmp_path, capsys, monkeypatch):
    """One file (or every job already made) and the API gone: no other submit failed to stop the run, so the
    watch sat silent for the wait's hour and then counted the file as failed. After API_AWAY_SECONDS (1 s here)
    without an answered poll the run stops, the job named as left on the server."""
    import http.server
    import threading

    from cli import submit

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Retry-After": "0.2", "Content-Type": "application/json",
                                "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.answer(202, {"id": "jo", "status": "queued", "progress": 0, "model": "bicubic", "input": {},
                              "output": {}})

        def do_GET(self):
            self.answer(503, {"code": "service_unavailable", "detail": "away"})

    monkeypatch.setattr(submit, "API_AWAY_SECONDS", 1)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = write_image(tmp_path / "only.png", width=8, height=8)
    args = build_parser().parse_args(["submit", str(source), "--wait", "--output-dir", str(tmp_path / "out"),
                                      "--api", f"http://127.0.0.1:{server.server_address[1]}"])
    ended: list[int] = []
    run_thread = threading.Thread(target=lambda: ended.append(args.func(args)), daemon=True)
    try:
        run_thread.start()
        run_thread.join(60)  # a guard, not a timing: it waited for the hour
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert ended == [1], err
    assert "answered no poll for 1 s" in err and "1 of 1 file(s) not finished" in err and f"{source} (jo)" in err
    assert "failed" not in err



def test_results_in_the_output_folder_are_never_taken_as_inputs(tmp_path, monkeypatch):
    """`upscale '*/*.png' out` run again found out/a.png, its own result, beside in/a.png: the batch was refused
    ("would write the same result file"), or, in other formats, earlier results were upscaled again. What lies
    in the output folder is left out, named or found; results already there are still skipped."""
    from cli.files import expand
    from cli.upscale import plan

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.png", width=12, height=8)
    first = run(["upscale", "*/*.png", "out", "--model", "bicubic", "--scale", "2"])
    again = run(["upscale", "*/*.png", "out", "--model", "bicubic", "--scale", "2"])
    assert first.returncode == 0 and (tmp_path / "out" / "a.png").exists(), first.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"skip in{os.sep}a.png: out{os.sep}a.png exists (--overwrite replaces it)"
    out = tmp_path / "out"
    write_image(out / "b.png", width=8, height=8)
    assert [source for source, *_ in plan([tmp_path / "in", out], None)[0]] == [tmp_path / "in" / "a.png"]
    with pytest.raises(FileNotFoundError, match="outside the output folder"):
        expand([out], results=out)
    # a file named on its own goes wherever it lies (`upscale a.jpg b.jpg .` was refused, or dropped a.jpg when
    # others were named too); a pattern's finds in the output folder do not
    assert expand([out / "b.png", tmp_path / "in"], results=out) == [out / "b.png", tmp_path / "in" / "a.png"]
    assert expand([tmp_path / "*" / "*.png"], results=out) == [tmp_path / "in" / "a.png"]
    monkeypatch.chdir(out)
    (out / "c.jpg").write_bytes((out / "b.png").read_bytes())
    named = run(["upscale", "c.jpg", ".", "--model", "bicubic", "--scale", "2"])
    assert named.returncode == 0 and (out / "c.png").exists(), named.stderr


def test_a_sigterm_cleans_up_as_ctrl_c_does(tmp_path):
    """`kill`, `timeout` and `docker stop` send SIGTERM: a streamed output's raw band file (a gigabyte for a big
    one) and the .part file stayed behind, where Ctrl-C removed them. Now both end alike, with 128 + the signal."""
    import signal

    source = write_image(tmp_path / "in.png", width=480, height=320)
    out = tmp_path / "out"
    process = subprocess.Popen([*UPSCALER, "upscale", str(source), str(out / "big.png"), "--scale", "2",
                                "--model", "residual_sr"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                    "UPSCALER_BAND_OUTPUT_PIXELS": "20000"})
    deadline = time.monotonic() + 120
    rows = ".upscaler-partial-*-bands-*/rows.tif"  # worker.scratch.scratch_beside
    while time.monotonic() < deadline and not list(out.glob(rows)) and process.poll() is None:
        time.sleep(0.05)
    assert list(out.glob(rows)), "the output was not streamed"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped at" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []  # no .big.png.part, no .upscaler-partial-*-bands-* folder


def _shipped_models(folder):
    """A copy of the shipped models folder (copies: a refused export must be seen to leave them as they were)."""
    import shutil

    shutil.copytree(Path(__file__).parents[1] / "shared" / "weights", folder)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_an_export_that_would_take_auto_away_is_refused_and_writes_nothing(tmp_path, capsys):
    """`export --name residual_sr_cond` of an unconditioned run replaced the robust network: auto was gone, and the
    API, the workers and `upscaler upscale` refused to start (the default model missing)."""
    from cli.__main__ import main
    from shared.settings import Settings
    from worker.training.export import CatalogWouldBreak, check_catalog_kept

    models = tmp_path / "models"
    before = _shipped_models(models)
    network = json.loads((models / "residual_sr.json").read_text())["network"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"arch": "residual_sr", "network": network}))
    (run_dir / "state.json").write_text(json.dumps({"step": 1, "seconds": 1}))
    (run_dir / "checkpoint.keras").write_bytes(b"not read: refused before")

    assert main(["export", str(run_dir), "--to", str(models), "--name", "residual_sr_cond"]) == 1
    said = capsys.readouterr().err
    assert said.startswith("upscaler export: exporting an unconditioned residual_sr network as 'residual_sr_cond'")
    assert "UPSCALER_DEFAULT_MODEL 'auto'" in said and "nothing was written" in said and len(said.splitlines()) == 1
    assert {path.name: path.read_bytes() for path in models.iterdir()} == before
    # with another default model, auto is still what it would lose
    with pytest.raises(CatalogWouldBreak, match="would take auto from the models it serves"):
        check_catalog_kept(models, "residual_sr_cond", "residual_sr", network, Settings(default_model="residual_sr"))
    # what keeps the catalog whole goes: a new name, a conditioned network as the robust one, a new folder
    check_catalog_kept(models, "residual_sr_v2", "residual_sr", network, Settings())
    check_catalog_kept(models, "residual_sr_cond", "residual_sr_cond", network, Settings())
    check_catalog_kept(tmp_path / "new", "anything", "residual_sr", network, Settings())


def test_upscale_of_a_folder_without_images_says_so_as_submit_does(tmp_path):
    """It exited 0 without a word when the images were in sub-folders; `submit` said "no images in X"."""
    shoot = tmp_path / "shoot"
    (shoot / "day1").mkdir(parents=True)
    write_image(shoot / "day1" / "a.png", width=8, height=8)
    (shoot / "notes.txt").write_text("not a photo")
    result = run(["upscale", str(shoot), str(tmp_path / "out"), "--model", "bicubic"])
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == f"upscaler upscale: no images in {shoot}; sub-folders are not looked into: " \
                                    f"{shoot / 'day1'}"
    assert not (tmp_path / "out").exists()
    submitted = run(["submit", str(shoot)], env={"UPSCALER_API_KEY": ""})
    assert submitted.returncode == 1 and submitted.stderr == result.stderr.replace("upscale:", "submit:")


def test_many_inputs_into_a_name_like_an_image_are_refused_not_made_a_folder(tmp_path):
    """`upscale a.png b.png big.jpg` (or a folder into big.jpg) made a folder named big.jpg, without a word."""
    a, b = (write_image(tmp_path / name, width=8, height=8) for name in ("a.png", "b.png"))
    for inputs in ([a, b], [tmp_path]):
        result = run(["upscale", *map(str, inputs), str(tmp_path / "big.jpg"), "--model", "bicubic"])
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"upscaler upscale: {tmp_path / 'big.jpg'} is named like an image file" in result.stderr
        assert "name a folder" in result.stderr and not (tmp_path / "big.jpg").exists()


@pytest.mark.parametrize("command,says", [
    (["upscale", "IN", "OUT", "--tile", "0"], "argument --tile: must be 1 or more, not 0"),  # silently the default
    (["upscale", "IN", "OUT", "--tile", "-5"], "argument --tile: must be 1 or more, not -5"),  # blamed the setting
    (["upscale", "IN", "OUT", "--scale", "9"], "argument --scale: must be from 1 to 8, not 9"),
    (["upscale", "IN", "OUT", "--denoise", "2"], "argument --denoise: must be 'auto' or a number from 0 to 1"),
    (["upscale", "IN", "OUT", "--scale", "2", "--width", "100"], "give one of scale, width/height or print_width"),
    (["upscale", "IN", "OUT", "--width", "100", "--dpi", "300", "--print-width", "2"], "give one of scale"),
    (["upscale", "IN", "OUT", "--print-width", "2"], "print_width and print_height need dpi"),
    (["upscale", "IN", "OUT", "--dpi", "0"], "argument --dpi: must be 1 or more, not 0"),
    (["upscale", "IN", "OUT", "--model", "nosuch"], "no model named 'nosuch'"),
    (["upscale", "IN", "TWIN", "OUTDIR"], "would write the same result file"),
    (["upscale", "IN", "OUT.gif"], "cannot write .gif files"),
    (["submit", "IN", "--scale", "9"], "argument --scale: must be from 1 to 8, not 9"),
    (["submit", "IN", "--output", "big.jpg"], "add --wait"),
    (["submit", "IN", "--scale", "2", "--width", "100"], "give one of scale, width/height or print_width"),
    (["submit", "IN", "--print-width", "2"], "print_width and print_height need dpi"),
    (["submit", "IN", "--dpi", "20000"], "argument --dpi: must be at most 9600, not 20000"),  # sent, then 422
    (["submit", "IN", "--denoise", "2"], "argument --denoise: must be 'auto' or a number from 0 to 1, not '2'"),
    (["submit", "IN", "--dpi", "300", "--print-width", "0"], "argument --print-width: must be above 0"),
    (["submit", "IN", "--wait", "--output", "big.jpg", "--format", "png"], "names a jpeg file but --format is png"),
])
def test_usage_errors_exit_2_with_the_commands_name(tmp_path, command, says):
    """Some were exit 1 (--scale 9, --denoise 2, --scale with --width), argparse's own 2; the messages of the file
    checks lacked the `upscaler upscale:` every other one starts with."""
    source = write_image(tmp_path / "in.png", width=8, height=8)
    (tmp_path / "twin").mkdir()
    names = {"IN": str(source), "TWIN": str(write_image(tmp_path / "twin" / "in.png", width=8, height=8)),
             "OUT": str(tmp_path / "out.png"), "OUTDIR": str(tmp_path / "many"), "OUT.gif": str(tmp_path / "out.gif")}
    result = run([names.get(part, part) for part in command] + (["--api", "http://127.0.0.1:9"]
                                                                 if command[0] == "submit" else []),
                 env={"UPSCALER_API_KEY": ""}, timeout=120)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"upscaler {command[0]}: "), result.stderr
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "many").exists()


def test_hidden_files_of_a_folder_are_not_inputs(tmp_path):
    """macOS writes ._IMG_0001.jpg (AppleDouble) beside each photo on a shared disk: each failed the run as an
    unreadable image. A folder's dot-files are left; one named on purpose still goes."""
    from cli.files import expand

    folder = tmp_path / "shoot"
    folder.mkdir()
    photo = write_image(folder / "IMG_0001.jpg", width=8, height=8)
    (folder / "._IMG_0001.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    hidden = write_image(folder / ".hidden.png", width=8, height=8)
    assert expand([folder]) == [photo]
    assert expand([folder, hidden]) == [photo, hidden]


def test_the_web_page_takes_a_folders_images_as_the_cli_does():
    """The page's folder walk decided by a list of its own, which had no .mpo; it now mirrors INPUT_SUFFIXES (no API
    says them) and leaves dot-files as the CLI does."""
    import re

    from shared.formats import INPUT_SUFFIXES

    script = (Path(__file__).parents[1] / "api" / "static" / "app.js").read_text()
    listed = re.search(r"const IMAGE_SUFFIXES = \[([^\]]*)\]", script)
    assert listed, "app.js names its image suffixes in IMAGE_SUFFIXES"
    assert re.findall(r'"([^"]+)"', listed.group(1)) == sorted(INPUT_SUFFIXES)
    assert 'entry.name.startsWith(".")' in script and '!name.startsWith(".")' in script


def test_the_web_page_offers_exactly_the_output_formats_the_api_makes():
    """The page lists its formats in its own markup (a select needs no script); nothing tied them to
    shared.limits.OUTPUT_FORMATS, the one list the API, CLI and SDK read."""
    import re

    from shared.limits import OUTPUT_FORMATS

    markup = (Path(__file__).parents[1] / "api" / "static" / "index.html").read_text()
    select = re.search(r'<select id="format"[^>]*>(.*?)</select>', markup, re.S)
    assert select, "index.html has the format select"
    assert re.findall(r'<option value="([^"]+)"', select.group(1)) == list(OUTPUT_FORMATS)


def test_progress_in_a_log_is_one_line_per_file_and_a_stop_says_where(tmp_path, monkeypatch, capsys):
    """Where stderr is no terminal, tqdm's \\r redraws filled logs with every frame; after Ctrl-C the bar's own
    update showed the file under way as done, and nothing said the run had stopped."""
    from worker import render as rendering

    sources = [write_image(tmp_path / f"{name}.png", width=12, height=8) for name in ("a", "b", "c")]
    logged = run(["upscale", *map(str, sources[:2]), str(tmp_path / "log"), "--model", "bicubic", "--scale", "2"])
    assert logged.returncode == 0 and "%|" not in logged.stderr, logged.stderr  # no bar, not one frame of it
    assert [line.split(" (")[0] for line in logged.stdout.splitlines()] == [
        f"wrote {tmp_path / 'log' / 'a.png'}", f"wrote {tmp_path / 'log' / 'b.png'}"]

    real = rendering.render

    def stopped_at_b(source, *args, **kwargs):
        if source.name == "b.png":
            raise KeyboardInterrupt
        return real(source, *args, **kwargs)

    monkeypatch.setattr(rendering, "render", stopped_at_b)
    args = build_parser().parse_args(["upscale", *map(str, sources), str(tmp_path / "out"), "--model", "bicubic"])
    with pytest.raises(KeyboardInterrupt):
        args.func(args)
    err = capsys.readouterr().err
    assert f"stopped at {sources[1]}; 1 of 3 file(s) written, 0 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD, "a.png"]


def test_eval_measures_each_model_once_and_checks_everything_before_measuring(tmp_path, monkeypatch, capsys):
    """`--models residual_sr residual_sr` was a traceback (zip of unequal lists); a mistyped set (`--sets set5 st5`)
    and a missing HEIC writer were found only after the earlier tables were measured, and --record saved none."""
    from cli.__main__ import main
    from worker.evaluation import register_heif_writer

    (tmp_path / "benchmark" / "set5").mkdir(parents=True)
    write_image(tmp_path / "benchmark" / "set5" / "a.png", width=24, height=24)
    common = ["eval", "--data", str(tmp_path), "--no-ssim", "--scales", "2", "--sets", "set5"]
    twice = run([*common, "--models", "residual_sr", "bicubic", "residual_sr"])
    assert twice.returncode == 0 and "Traceback" not in twice.stderr, twice.stderr
    assert twice.stdout.count("| clean | set5 (1) | x2 |") == 1

    assert main([*common, "st5", "--models", "residual_sr"]) == 1
    out, err = capsys.readouterr()
    assert "| clean |" not in out and err.startswith("upscaler eval: no benchmark set 'st5' in ")

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif then fails
    register_heif_writer.cache_clear()
    try:
        assert main([*common, "--models", "residual_sr", "--degradation", "clean", "heif50"]) == 1
    finally:
        register_heif_writer.cache_clear()
    out, err = capsys.readouterr()
    assert "| clean |" not in out and err.strip() == ("upscaler eval: writing HEIC files (the heifQ protocols) needs "
                                                      "pillow-heif: pip install -e '.[dev]'")


def test_eval_records_only_json_numbers_and_names_a_limit_only_where_it_cut_the_set(tmp_path, monkeypatch, capsys):
    """At x1 a clean file is its own truth (inf dB): --record wrote `Infinity` into the model's record, which
    strict JSON readers refuse and GET /v1/models served as null, and the gain printed `+nan`. `--limit 5` on a
    set of 2 images recorded them as "set5_5"."""
    import shutil

    from cli.__main__ import main

    models = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parent.parent / "shared" / "weights", models)
    monkeypatch.setenv("UPSCALER_MODELS_DIR", str(models))
    (tmp_path / "benchmark" / "set5").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "benchmark" / "set5" / name, width=24, height=24)
    assert main(["eval", "--data", str(tmp_path), "--no-ssim", "--scales", "1", "2", "--sets", "set5", "--limit", "5",
                 "--models", "residual_sr", "--record"]) == 0
    out = capsys.readouterr().out
    assert "| clean | set5 (2) | x1 | inf | nan | residual_sr | inf | nan | +0.00 | +0.00 |" in out, out

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    table = json.loads((models / "residual_sr.json").read_text(), parse_constant=refuse)["benchmark"]["clean"]
    assert set(table["set5"]) == set(table["set5_bicubic"]) == {"x2", "x3", "x4"}  # x2 measured here, no x1
    assert "set5_5" not in table


def test_a_model_record_refuses_what_is_not_json(tmp_path):
    from shared.catalog import write_record

    write_record(tmp_path, "m", {"benchmark": {"clean": {"set5": {"x2": 30.0}}}})
    with pytest.raises(ValueError, match="JSON compliant"):
        write_record(tmp_path, "m", {"benchmark": {"clean": {"set5": {"x1": float("inf")}}}})
    assert json.loads((tmp_path / "m.json").read_text())["benchmark"]["clean"]["set5"] == {"x2": 30.0}  # kept whole


def test_jobs_list_piped_into_head_ends_quietly():
    """``upscaler jobs list | head -1`` printed a "Broken pipe" error and exited 1 once head had its line. A reader
    that leaves ends the command as SIGPIPE ends a shell tool: nothing on stderr, exit 141 (128 + SIGPIPE)."""
    from tests.test_sdk import _FakeApi, _job

    page = json.dumps({"data": [json.loads(_job("succeeded"))] * 100, "next_cursor": "more"}).encode()
    fake = _FakeApi([(200, {}, page)])  # pages without end: far more lines than a pipe holds
    try:
        lister = subprocess.Popen([*UPSCALER, "jobs", "list", "--limit", "3000", "--api", fake.base],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "UPSCALER_API_KEY": ""})
        head = subprocess.run(["head", "-1"], stdin=lister.stdout, capture_output=True, text=True, timeout=60)
        lister.stdout.close()
        errors = lister.stderr.read()
        assert lister.wait(60) == 141, errors
    finally:
        fake.close()
    assert head.stdout.startswith("j1  succeeded") and errors == ""


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
def test_submit_into_a_reader_that_left_ends_quietly(tmp_path, unbuffered):
    """``upscaler submit`` without --wait writes a line per file: into a pipe whose reader had gone it said
    "Broken pipe" for each file (unbuffered) or at exit, and exited 1 (or 120)."""
    from tests.test_sdk import _FakeApi, _job

    files = [str(write_image(tmp_path / f"{name}.png", width=8, height=8)) for name in "abc"]
    fake = _FakeApi([(201, {}, _job("queued"))])
    gone, writer = os.pipe()
    os.close(gone)  # the reader left before the first line
    try:
        submitted = subprocess.run([*UPSCALER, "submit", *files, "--api", fake.base], stdout=writer,
                                   stderr=subprocess.PIPE, text=True, timeout=120,
                                   env={**os.environ, "UPSCALER_API_KEY": "", "PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(writer)
        fake.close()
    assert (submitted.returncode, submitted.stderr) == (141, "")
    if unbuffered:  # stopped at the first line that could not be written, as SIGPIPE would have
        assert len(fake.requests) == 1


def test_submit_wait_into_a_reader_that_left_ends_quietly_not_failed(tmp_path):
    """With --wait the "done" line is written by the file's thread: a reader gone counted the file as failed
    ("error: ...: [Errno 32] Broken pipe", "1 of 1 job(s) failed", exit 1) although its result was saved."""
    from tests.test_sdk import _FakeApi, _job

    source = write_image(tmp_path / "a.png", width=8, height=8)
    fake = _FakeApi([(201, {}, _job("queued"))])
    finished = _job("succeeded", output={"filename": "a.png", "width": 16, "height": 16},
                    result_url=f"{fake.base}/files/a.png")
    fake.answers += [(200, {}, finished)] * 2 + [(200, {"Content-Type": "image/png"}, source.read_bytes())]
    gone, writer = os.pipe()
    os.close(gone)
    try:
        submitted = subprocess.run([*UPSCALER, "submit", str(source), "--wait", "--output-dir", str(tmp_path / "out"),
                                    "--api", fake.base], stdout=writer, stderr=subprocess.PIPE, text=True,
                                   timeout=120, env={**os.environ, "UPSCALER_API_KEY": "", "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(writer)
        fake.close()
    assert (tmp_path / "out" / "a.png").exists()  # the result was saved before the line could not be written
    assert submitted.returncode == 141 and "error" not in submitted.stderr and "failed" not in submitted.stderr, \
        submitted.stderr


def test_keys_revoke_cancel_jobs_ends_the_tenants_queued_and_running_jobs_only(tmp_path, redis_url):
    """A revoked key's jobs ran to the end (a leaked key's, a customer who left); ``--cancel-jobs`` ends them as
    the API's cancel does: job.canceled recorded for its webhook, the charge of a job not started given back."""
    from shared.db import make_engine, make_session_factory
    from shared.models import Job, WebhookDelivery, utcnow
    from tests.factories import make_job

    env = {"UPSCALER_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}", "UPSCALER_REDIS_URL": redis_url,
           "UPSCALER_STORAGE": "local", "UPSCALER_STORAGE_DIR": str(tmp_path / "storage"),
           "UPSCALER_SECRET_KEY": "s" * 32}
    assert run(["migrate"], env=env).returncode == 0
    assert run(["keys", "create", "--name", "acme"], env=env).returncode == 0
    sessions = make_session_factory(make_engine(env["UPSCALER_DATABASE_URL"]))
    with sessions() as session:
        queued = make_job(session, tenant="acme", webhook_url="http://127.0.0.1:9/hook", charged_megapixels=2.0,
                          charged_at=utcnow()).id
        running = make_job(session, tenant="acme", status="running", started_at=utcnow(), lease_owner="w",
                           lease_expires_at=utcnow()).id
        done = make_job(session, tenant="acme", status="succeeded", finished_at=utcnow()).id
        others = make_job(session, tenant="globex").id
    assert run(["keys", "revoke", "acme"], env=env).returncode == 0  # revoked first, its jobs left to run
    revoked = run(["keys", "revoke", "acme", "--cancel-jobs"], env=env)  # then canceled all the same
    assert revoked.returncode == 0, revoked.stderr
    assert "'acme' was already revoked" in revoked.stdout
    assert "canceled 2 queued or running job(s) of 'acme'" in revoked.stdout
    assert run(["keys", "revoke", "acne", "--cancel-jobs"], env=env).returncode == 1  # no such tenant
    with sessions() as session:
        status = {job_id: session.get(Job, job_id).status for job_id in (queued, running, done, others)}
        assert status == {queued: "canceled", running: "canceled", done: "succeeded", others: "queued"}
        assert session.get(Job, queued).charged_megapixels is None  # taken off the job and given back
        assert [d.event for d in session.query(WebhookDelivery).filter_by(job_id=queued)] == ["job.canceled"]


def _buffered_env(**extra: str) -> dict[str, str]:
    """The environment without PYTHONUNBUFFERED (the test environment sets it): standard output into a pipe or a
    file is then block-buffered, as for a user's log or CI runner."""
    return {**{name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"},
            "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def test_a_run_ended_at_once_still_hands_over_what_it_wrote():
    """`submit --wait` stopped by Ctrl-C or SIGTERM ends with os._exit, which skips Python's flush at exit: into a pipe
    or a log file every "done X -> Y" line still in the buffer was lost (stderr alone was flushed). A reader that has
    gone is no error then."""
    script = ("from cli.interrupts import Terminated, end_at_once; print('done a.png -> out/a.png'); "
              "end_at_once(Terminated(15))")
    command = [sys.executable, "-c", script]
    ended = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_buffered_env())
    assert (ended.returncode, ended.stdout, ended.stderr) == (143, "done a.png -> out/a.png\n", "")
    gone, writer = os.pipe()
    os.close(gone)
    try:
        left = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                              env=_buffered_env())
    finally:
        os.close(writer)
    assert (left.returncode, left.stderr) == (143, "")


def _succeeded(fake, name: str = "a.png") -> tuple[int, dict, bytes]:
    """A fake API's answer: job j1 succeeded, its result at ``fake``'s /files/<name>."""
    from tests.test_sdk import _job

    return 200, {}, _job("succeeded", output={"filename": name, "width": 16, "height": 16},
                         result_url=f"{fake.base}/files/{name}")


def test_submit_wait_stopped_by_sigterm_keeps_the_lines_of_the_files_it_finished(tmp_path):
    """Into a pipe or a log file, `submit --wait` stopped by SIGTERM (or Ctrl-C) lost every "done X -> Y" line, so
    nothing said which results had been saved. a.png's job succeeds, b.png's runs until the signal."""
    from tests.test_sdk import _FakeApi, _job

    a, b = (write_image(tmp_path / name, width=8, height=8) for name in ("a.png", "b.png"))
    fake = _FakeApi([])
    fake.answers = [(201, {}, _job("queued")), _succeeded(fake), _succeeded(fake), (200, {}, a.read_bytes()),
                    (201, {}, _job("queued")), (200, {"Retry-After": "0.1"}, _job("running"))]
    out = tmp_path / "out"
    process = subprocess.Popen([*UPSCALER, "submit", str(a), str(b), "--wait", "--concurrency", "1", "--output-dir",
                                str(out), "--api", fake.base], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_buffered_env(UPSCALER_API_KEY=""))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(fake.requests) < 6 and process.poll() is None:
            time.sleep(0.05)
        assert len(fake.requests) >= 6, process.stderr.read() if process.poll() is not None else fake.requests
        process.send_signal(signal.SIGTERM)  # while b.png's job is watched
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        fake.close()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stdout == f"done {a} -> {out / 'a.png'} (16x16)\n"
    assert f"jobs left on the server: {b} (j1)" in stderr


def test_per_file_lines_reach_a_log_as_they_are_written(tmp_path):
    """Into a log file (stdout and stderr together) the `wrote` and `done` lines came all at once at exit, after the
    error lines and the summary: a log could not say what a run had done before a file failed."""
    from tests.test_sdk import _FakeApi, _job

    good = write_image(tmp_path / "a.png", width=12, height=8)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not an image")
    fake = _FakeApi([])
    fake.answers = [(201, {}, _job("queued")), _succeeded(fake), _succeeded(fake), (200, {}, good.read_bytes()),
                    (201, {}, _job("queued")), (200, {}, _job("failed", error={"code": "internal_error"}))]
    logs = []
    try:
        for command in (["upscale", str(good), str(bad), str(tmp_path / "local"), "--model", "bicubic"],
                        ["submit", str(good), str(bad), "--wait", "--concurrency", "1", "--output-dir",
                         str(tmp_path / "remote"), "--api", fake.base]):
            with open(tmp_path / "run.log", "w") as log:
                ended = subprocess.run([*UPSCALER, *command, "--scale", "2"], stdout=log, stderr=subprocess.STDOUT,
                                       timeout=300, env=_buffered_env(UPSCALER_API_KEY=""))
            logs.append((ended.returncode, (tmp_path / "run.log").read_text()))
    finally:
        fake.close()
    for (status, log), first in zip(logs, ("wrote", "done"), strict=True):
        said = [line.split()[0] for line in log.splitlines() if line.startswith((first, "error:", "1 of 2"))]
        assert status == 1 and said == [first, "error:", "1"], log


def test_a_folders_result_is_skipped_only_when_this_file_made_it_with_these_options(tmp_path, capsys):
    """Results were skipped by name alone: `upscale card1 out` then `upscale card2 out`, both cards holding an
    IMG_0001, skipped card2's photo ("exists") and exited 0; a rerun with another --scale kept the old results.
    OUTDIR/.upscaler-results.jsonl now says what made each result: the same unchanged file with the same options is
    skipped; anything else is an error naming the clash while the other files go on, and --overwrite replaces it.
    A result no record speaks of (an earlier version's) is skipped as before, saying so."""
    from cli.__main__ import main

    card1, card2, out = tmp_path / "card1", tmp_path / "card2", tmp_path / "out"
    card1.mkdir()
    card2.mkdir()
    first = write_image(card1 / "IMG_0001.png", width=12, height=8, seed=1)
    other = write_image(card2 / "IMG_0001.png", width=10, height=6, seed=2)
    write_image(card2 / "IMG_0002.png", width=8, height=8)
    result = out / "IMG_0001.png"

    def upscale(folder: Path, *options: str) -> tuple[int, str, str]:
        status = main(["upscale", str(folder), str(out), "--model", "bicubic", *options])
        said = capsys.readouterr()
        return status, said.out, said.err

    assert upscale(card1, "--scale", "2")[0] == 0
    made = result.read_bytes()
    assert upscale(card1, "--scale", "2") == (0, f"skip {first}: {result} exists (--overwrite replaces it)\n", "")
    status, _, err = upscale(card2, "--scale", "2")
    assert status == 1 and result.read_bytes() == made
    assert (f"error: {other}: {result} exists, made from {first.resolve()}; it is left as it is: name another "
            "output folder, or --overwrite replaces it") in err
    assert "1 of 2 file(s) failed" in err and (out / "IMG_0002.png").exists()  # the other file went on
    status, _, err = upscale(card1, "--scale", "3")
    assert status == 1 and "made with scale 2 (now 3)" in err and result.read_bytes() == made
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))  # edited since
    status, _, err = upscale(card1, "--scale", "2")
    assert status == 1 and "made from this file before it changed" in err and result.read_bytes() == made

    assert upscale(card2, "--scale", "2", "--overwrite")[0] == 0
    with Image.open(result) as replaced:
        assert replaced.size == (20, 12)  # card2's
    assert upscale(card2, "--scale", "2")[0] == 0  # its record now says card2's
    (out / RECORD).unlink()  # results of a version that kept no record
    assert upscale(card1, "--scale", "2") == (
        0, f"skip {first}: {result} exists (no record of what made it; --overwrite replaces it)\n", "")


def test_submit_skips_a_result_only_when_this_file_made_it_with_these_options(tmp_path, capsys):
    """`submit --wait --output-dir` skipped by name alone too: card2's IMG_0001 was never sent. A clash is refused
    before anything is sent for that file; --overwrite (new) submits and downloads it."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi, _job

    card1, card2, out = tmp_path / "card1", tmp_path / "card2", tmp_path / "out"
    card1.mkdir()
    card2.mkdir()
    first = write_image(card1 / "IMG_0001.png", width=12, height=8, seed=1)
    other = write_image(card2 / "IMG_0001.png", width=10, height=6, seed=2)
    result = out / "IMG_0001.png"
    fake = _FakeApi([])
    fake.answers = [(201, {}, _job("queued")), _succeeded(fake), _succeeded(fake), (200, {}, b"CARD1")]

    def submit(source: Path, *options: str) -> tuple[int, str, str]:
        status = main(["submit", str(source), "--wait", "--output-dir", str(out), "--api", fake.base, "--api-key",
                       "", *options])
        said = capsys.readouterr()
        return status, said.out, said.err

    try:
        assert submit(card1)[0] == 0 and result.read_bytes() == b"CARD1"
        sent = len(fake.requests)
        assert submit(card1) == (0, f"skip {first}: {result} exists (--overwrite replaces it)\n", "")
        status, _, err = submit(card2)
        assert status == 1 and f"error: {other}: {result} exists, made from {first.resolve()}" in err
        assert "1 of 1 file(s) not sent" in err
        status, _, err = submit(card1, "--scale", "2")
        assert status == 1 and "made with scale unset (now 2)" in err
        assert len(fake.requests) == sent and result.read_bytes() == b"CARD1"  # nothing sent for them
        fake.answers = [(201, {}, _job("queued")), _succeeded(fake), _succeeded(fake), (200, {}, b"CARD2")]
        assert submit(card2, "--overwrite")[0] == 0 and result.read_bytes() == b"CARD2"
        assert submit(card2)[:2] == (0, f"skip {other}: {result} exists (--overwrite replaces it)\n")
    finally:
        fake.close()


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """`submit --wait --output-dir /proc/nope` uploaded, ran and was charged for the job, then could not save it;
    `upscale a.png /sys/x.png` ran the inference first. Each is now a usage error before anything is sent or
    rendered."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi, _job
    from worker import render as rendering

    rendered = []
    monkeypatch.setattr(rendering, "render", lambda *args, **kwargs: rendered.append(args))
    source = write_image(tmp_path / "a.png", width=8, height=8)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fake = _FakeApi([(201, {}, _job("queued"))])
    remote = ["--wait", "--api", fake.base, "--api-key", ""]
    try:
        for command in (["upscale", str(source), "/sys/x.png"], ["upscale", str(source), str(blocker / "x.png")],
                        ["upscale", str(source), str(blocker / "out")],
                        ["submit", str(source), "--output-dir", "/proc/nope", *remote],
                        ["submit", str(source), "--output", str(blocker / "x.png"), *remote]):
            assert main([*command, "--scale", "2"]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"upscaler {command[0]}: cannot write into ") and err.count("\n") == 1, err
        # an output folder that is a file was said as "cannot write into a-file: File exists"
        assert main(["submit", str(source), "--output-dir", str(blocker), *remote]) == 2
        assert capsys.readouterr().err == (f"upscaler submit: cannot write into {blocker}: it is a file, not a folder; "
                                           "name another output\n")
    finally:
        fake.close()
    assert fake.requests == [] and rendered == []


def test_a_result_that_cannot_be_downloaded_is_not_a_failed_job(tmp_path, capsys):
    """The job succeeded and its result link failed: the run said "1 of 1 job(s) failed", as if the job had (and
    a rerun is what fetches it, without a second job)."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi, _job

    source = write_image(tmp_path / "a.png", width=8, height=8)
    fake = _FakeApi([])
    fake.answers = [(201, {}, _job("queued")), _succeeded(fake), _succeeded(fake),
                    (404, {}, b'{"code": "not_found", "detail": "no such file"}')]
    out = tmp_path / "out"
    try:
        status = main(["submit", str(source), "--wait", "--output-dir", str(out), "--api", fake.base, "--api-key", ""])
    finally:
        fake.close()
    err = capsys.readouterr().err
    assert status == 1
    assert (f"error: {source}: download failed (job j1 succeeded: run the same `upscaler submit` again to download "
            "it): 404 not_found: no such file") in err
    assert "1 of 1 result(s) not downloaded (their jobs succeeded)" in err and "job(s) failed" not in err
    assert list(out.iterdir()) == []  # no result, so no record of one


def test_jobs_list_against_a_web_page_says_what_answered_in_one_line(capsys):
    """A base URL pointing at a web server (or a proxy's page) was a JSONDecodeError traceback from the SDK."""
    from cli.__main__ import main
    from tests.test_sdk import _FakeApi

    fake = _FakeApi([(200, {"Content-Type": "text/html"}, b"<html><body>Welcome to nginx!</body></html>")])
    try:
        assert main(["jobs", "list", "--api", fake.base, "--api-key", ""]) == 1
    finally:
        fake.close()
    assert capsys.readouterr().err == (
        f"upscaler jobs: 200 invalid_response: {fake.base}/v1/jobs?limit=100 answered text/html, not the API's JSON: "
        "is the client's base_url (UPSCALER_API_URL) the API's address?\n")


def test_commands_that_sign_nothing_leave_no_development_secret_behind(tmp_path):
    """Every command read or made the development secret: ``upscaler upscale`` left ./var/secret_key wherever it ran,
    and failed in a folder it could not write. The API (which signs links) still makes it where it runs."""
    source = write_image(tmp_path / "in.png", width=20, height=16)
    work = tmp_path / "work"
    work.mkdir()
    env = {name: value for name, value in os.environ.items()
           if name not in ("UPSCALER_SECRET_KEY", "UPSCALER_SECRET_FILE")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", UPSCALER_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    for command in (["upscale", str(source), str(tmp_path / "out.png"), "--model", "bicubic", "--scale", "2"],
                    ["migrate"], ["keys", "list"]):
        done = subprocess.run([*UPSCALER, *command], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr)
    assert list(work.iterdir()) == []
    from shared.settings import Settings

    made = Settings.from_env({"UPSCALER_SECRET_FILE": str(work / "var" / "secret_key")})
    assert len(made.secret_key) >= 16 and (work / "var" / "secret_key").exists()


def test_each_launch_counts_in_a_fresh_metrics_folder_of_its_own(monkeypatch, tmp_path):
    """An operator who set PROMETHEUS_MULTIPROC_DIR (as prometheus_client's guide says) got it used as it was:
    never emptied, so a restarted API's first scrape served the previous run's counts, and an API and a worker
    given the same folder each exposed the other's series."""
    import argparse

    from cli import services

    monkeypatch.setattr(services.os, "execv", lambda path, argv: None)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"a previous run's")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    for written in ("UPSCALER_API_THREADS", "UPSCALER_WORKER_METRICS_PORT"):
        monkeypatch.setenv(written, "")  # recorded, so what the commands write is undone after the test
        monkeypatch.delenv(written)
    services.run_api(argparse.Namespace(host=None, port=free_port(), workers=1, threads=3))
    api = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    services.run_worker(argparse.Namespace(queues="webhooks", concurrency=1, beat=False, name="w@%h",
                                           loglevel="INFO", metrics_port=0))
    worker = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert len({api, worker, str(shared)}) == 3 and os.listdir(api) == os.listdir(worker) == []
