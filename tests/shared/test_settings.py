from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError


def test_reads_prefixed_variables_with_types():
    s = Settings.from_env({"UPSCALER_API_PORT": "9001", "UPSCALER_STORAGE_DIR": "/tmp/x",
                           "UPSCALER_SWEEP_INTERVAL": "2.5", "UPSCALER_STORAGE": "s3", "OTHER": "ignored"})
    assert s.api_port == 9001
    assert s.storage_dir == Path("/tmp/x")
    assert s.sweep_interval == 2.5
    assert s.storage == "s3"


def test_defaults_are_embedded_and_local():
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///")
    assert s.storage == "local"
    assert s.redis_url.startswith("redis://127.0.0.1")


def test_production_refuses_to_start_without_its_own_secret(tmp_path):
    for env in ({"UPSCALER_ENV": "production"}, {"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": "short"}):
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            Settings.from_env({**env, "UPSCALER_SECRET_FILE": str(tmp_path / "s")})
    assert not (tmp_path / "s").exists()  # production never falls back to a file it made itself
    assert Settings.from_env({"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": "x" * 32,
                              "UPSCALER_PUBLIC_URL": "https://up.example"}).production
    # the manifests' placeholder metrics token was accepted: a guessable token in front of every metric
    with pytest.raises(SettingsError, match="METRICS_TOKEN must be 16"):
        Settings.from_env({"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": "x" * 32,
                           "UPSCALER_PUBLIC_URL": "https://up.example", "UPSCALER_METRICS_TOKEN": "CHANGE-ME"})


def test_development_secret_is_random_private_and_shared_by_every_process(tmp_path):
    """Issue 10 #6: no public constant; made on first start in var/ with mode 0600, then reused."""
    first = Settings.from_env({"UPSCALER_SECRET_FILE": str(tmp_path / "var" / "secret_key")})
    again = Settings.from_env({"UPSCALER_SECRET_FILE": str(tmp_path / "var" / "secret_key")})
    elsewhere = Settings.from_env({"UPSCALER_SECRET_FILE": str(tmp_path / "other" / "secret_key")})
    assert len(first.secret_key) >= 32 and first.secret_key == again.secret_key != elsewhere.secret_key
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600


def _secrets_of(folder: str, count: int) -> list[str]:
    from shared.settings import load_or_create_secret

    return [load_or_create_secret(Path(folder) / f"secret_{n}") for n in range(count)]


def test_processes_starting_together_all_read_one_whole_secret(tmp_path):
    """Created in place, the file was briefly empty: a process started at that moment signed with an empty key."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(6) as pool:
        seen = pool.starmap(_secrets_of, [(str(tmp_path), 40)] * 6)
    for n in range(40):
        assert len({secrets[n] for secrets in seen}) == 1 and len(seen[0][n]) >= 32
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"secret_{n}" for n in range(40))  # no drafts left


@pytest.mark.parametrize("make", [lambda path: path.write_text(""), lambda path: path.write_text("short\n"),
                                  lambda path: path.mkdir(), lambda path: path.write_bytes(b"\xff" * 40)])
def test_a_secret_file_that_cannot_serve_is_one_line_naming_the_setting(tmp_path, make):
    make(tmp_path / "secret_key")
    with pytest.raises(SettingsError, match="UPSCALER_SECRET_FILE"):
        Settings.from_env({"UPSCALER_SECRET_FILE": str(tmp_path / "secret_key")})


@pytest.mark.parametrize("env,says", [
    ({"UPSCALER_API_PORT": "eighty"}, "not a valid int"), ({"UPSCALER_STORAGE": "ftp"}, "'local' or 's3'"),
    ({"UPSCALER_MAX_UPLOAD_BYTES": "0"}, "must be positive"),
    ({"UPSCALER_SWEEP_INTERVAL": "0"}, "SWEEP_INTERVAL must be positive"),  # beat flooded Redis with sweeps
    ({"UPSCALER_ENQUEUE_TIMEOUT": "0"}, "ENQUEUE_TIMEOUT must be positive"),  # every publish failed at once
    ({"UPSCALER_JOB_TIME_LIMIT": "0"}, "JOB_TIME_LIMIT must be positive"),
    ({"UPSCALER_MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS must be positive"),
    ({"UPSCALER_RETENTION_SECONDS": "-1"}, "0 or more (0: keep)"),
    ({"UPSCALER_API_PORT": "70000"}, "at most 65535"),
    ({"UPSCALER_S3_MULTIPART_THRESHOLD_MB": "1"}, "at least 5"),
    ({"UPSCALER_WEBHOOK_TIMEOUT": "nan"}, "not a valid float"),
    ({"UPSCALER_WEBHOOK_RETRY_SCHEDULE": "5,nan"}, "comma-separated seconds"),
    ({"UPSCALER_WEBHOOK_ALLOW_PRIVATE": "ture"}, "true/yes/on or 0/false/no/off"),  # was quietly False
    # a scheme-less endpoint was a traceback in every gunicorn worker, naming no variable
    ({"UPSCALER_S3_PUBLIC_ENDPOINT_URL": "localhost:9000"}, "S3_PUBLIC_ENDPOINT_URL must be an http(s)://host"),
    ({"UPSCALER_S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL must be an http(s)://host"),
    # SigV4 links live 7 days at most: a longer TTL was signed anyway, into links S3 refuses
    ({"UPSCALER_STORAGE": "s3", "UPSCALER_RESULT_URL_TTL": "864000"}, "at most 604800 (7 days) with S3"),
])
def test_invalid_values_fail_fast(env, says):
    with pytest.raises(SettingsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_boolean_words_and_zero_meaning_off_are_accepted():
    settings = Settings.from_env({"UPSCALER_WEBHOOK_ALLOW_PRIVATE": "Yes", "UPSCALER_RETENTION_SECONDS": "0",
                                  "UPSCALER_SPLIT_OUTPUT_PIXELS": "0", "UPSCALER_RATE_LIMIT_PER_MINUTE": "0"})
    assert settings.webhook_allow_private is True and settings.retention_seconds == 0
    assert Settings.from_env({"UPSCALER_WEBHOOK_ALLOW_PRIVATE": "off"}).webhook_allow_private is False


@pytest.mark.parametrize("secret", ["abc", "whsec_abc", "whsec_not base64!", "whsec_" + "QUJD" * 2])
def test_a_webhook_secret_that_cannot_sign_is_refused_at_start(secret):
    """whsec_abc once passed and then failed every delivery (its base64 does not decode); a short key is weak."""
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        Settings.from_env({"UPSCALER_WEBHOOK_SECRET": secret})


def test_a_standard_webhooks_secret_is_accepted_and_signs():
    from shared.webhooks import signed_headers

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks specification's example
    assert Settings.from_env({"UPSCALER_WEBHOOK_SECRET": secret}).webhook_secret == secret
    assert signed_headers(secret, "msg_1", "{}", 1)["webhook-signature"].startswith("v1,")


def test_a_heartbeat_timeout_within_the_start_timeout_is_refused():
    """Pool processes beat first after the start timeout: raising only that once restarted every worker forever."""
    with pytest.raises(SettingsError, match="HEARTBEAT_TIMEOUT"):
        Settings.from_env({"UPSCALER_WORKER_START_TIMEOUT": "180"})
    slow = Settings.from_env({"UPSCALER_WORKER_START_TIMEOUT": "180", "UPSCALER_WORKER_HEARTBEAT_TIMEOUT": "300"})
    assert slow.worker_heartbeat_timeout == 300


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().api_port = 1  # type: ignore[misc]


def test_every_setting_is_documented_in_the_readme():
    from dataclasses import fields

    readme = Path("README.md").read_text()
    missing = [f"UPSCALER_{f.name.upper()}" for f in fields(Settings) if f"UPSCALER_{f.name.upper()}" not in readme]
    assert missing == []



def _readme_defaults() -> dict[str, str]:
    """``UPSCALER_NAME -> default`` as README.md's Configuration table states it (a row may name two settings,
    with a default each); ``""`` for those documented as empty or derived."""
    import re

    defaults = {}
    for line in Path("README.md").read_text().splitlines():
        if not line.startswith("| `UPSCALER_"):
            continue
        names, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = re.findall(r"`(UPSCALER_[A-Z0-9_]+)`", names)
        values = [""] * len(names) if default.startswith(("empty", "derived")) else re.findall(r"`([^`]*)`", default)
        defaults.update(zip(names, values if len(values) == len(names) else values[:1] * len(names), strict=True))
    return defaults


def test_the_readme_states_every_default_truly():
    """The table is where operators read what an unset variable means: a default changed in the code and not
    there (or the reverse) is a deployment that behaves otherwise than its operator planned."""
    from dataclasses import fields

    documented, actual = _readme_defaults(), Settings()
    wrong = {}
    for f in fields(Settings):
        name, value = f"UPSCALER_{f.name.upper()}", getattr(actual, f.name)
        if name not in documented:
            continue  # test_every_setting_is_documented_in_the_readme says so
        text = documented[name]
        if isinstance(value, bool):
            same = text in ("true", "false") and (text == "true") == value
        elif isinstance(value, int | float):
            same = text.replace(",", "").replace("_", "").strip() != "" and float(text) == value
        elif isinstance(value, Path):
            same = value.as_posix() == text or value.as_posix().endswith("/" + text)  # package folders: relative
        else:
            same = text == value
        if not same:
            wrong[name] = (text, value)
    assert wrong == {}

def test_production_requires_a_public_url_for_links():
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        Settings.from_env({"UPSCALER_ENV": "production", "UPSCALER_SECRET_KEY": "x" * 32})


@pytest.mark.parametrize(("name", "value"), [("UPSCALER_DATABASE_URL", "postgress://u:p@db/upscaler"),
                                             ("UPSCALER_DATABASE_URL", "var/upscaler.db"),
                                             ("UPSCALER_REDIS_URL", "htp://redis:6379/0"),
                                             ("UPSCALER_REDIS_URL", "127.0.0.1:6379"),
                                             ("UPSCALER_DATABASE_URL", "mysql://u:p@db/x")])
def test_a_mistyped_database_or_redis_url_is_one_line_naming_the_setting(name, value):
    """They were a 29-line SQLAlchemy traceback (``migrate``, ``keys``) or a 71-line kombu one (``worker``), and
    every gunicorn worker failed to boot (``api``)."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("url", ["sqlite:///var/upscaler.db", "sqlite:////abs/path.db", "sqlite://",
                                 "postgres://u:p@db/x", "postgresql://u:p@db/x", "postgresql://",
                                 "postgresql+psycopg://u:p@db:5432/x?sslmode=require",
                                 "postgresql+psycopg2://u:p@db/x", "postgresql+pg8000://u:p@db/x"])
def test_every_database_url_the_platform_runs_on_is_accepted(url):
    assert Settings.from_env({"UPSCALER_DATABASE_URL": url}).database_url == url
