"""All configuration, read once from the environment into one frozen object.

Every variable is documented in README.md ("Configuration"). Tests build their own ``Settings``
instead of mutating ``os.environ``; production mode refuses to start without a real secret.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.signing import webhook_key

PACKAGE_ROOT = Path(__file__).resolve().parent
MIN_SECRET_LENGTH = 16
HEARTBEAT_MARGIN = 5.0  # seconds between a pool process's first heartbeat and the watchdog's deadline, at least
MIN_WEBHOOK_KEY_BYTES = 16  # Standard Webhooks keys are 24..64 random bytes; ours (derived) are 32
PRECISIONS = ("float32", "bfloat16")  # what a network computes in (worker.engine.precision maps them to Keras)
PRECISION_CHOICES = ("auto", *PRECISIONS)  # auto: chosen from the hardware


# Every count, size, duration and port has a floor, checked at start: a zero or negative one was accepted and
# failed later and elsewhere (a sweep interval of 0 flooded Redis with sweeps; an enqueue timeout of 0 made every
# publish fail; a job time limit of 0 killed every job after a minute).
POSITIVE = ("api_port", "api_threads", "max_upload_bytes", "max_input_pixels", "max_output_pixels",
            "max_whole_output_pixels", "result_url_ttl", "tile_size", "memory_budget_mb", "band_output_pixels",
            "job_time_limit", "lease_seconds", "max_attempts", "storage_outage_grace", "queued_stale_seconds",
            "sweep_interval", "enqueue_timeout", "webhook_timeout", "input_fetch_timeout", "idempotency_ttl",
            "worker_concurrency", "worker_start_timeout", "worker_heartbeat_timeout")
NON_NEGATIVE = {"api_workers": "cores + 1", "split_output_pixels": "never split", "visibility_timeout": "derived",
                "rate_limit_per_minute": "unlimited", "max_active_jobs": "unlimited", "daily_megapixels": "unlimited",
                "retention_seconds": "keep", "worker_metrics_port": "off", "model_load_delay": "none",
                "inference_threads": "TensorFlow's default", "webhook_tenant_concurrency": "no cap"}
MIN_S3_PART_MB = 5
# The longest a webhook attempt may take: a delivery task's time limits (worker.tasks) are set from it, so an
# attempt always ends as a recorded failure, not killed by Celery with nothing recorded (and then re-sent for ever)
MAX_WEBHOOK_TIMEOUT = 60.0
MAX_PRESIGNED_SECONDS = 604800  # SigV4's limit on a presigned URL's life
# Seconds a job's task may run past UPSCALER_JOB_TIME_LIMIT before Celery kills it (its hard time limit): the soft
# limit ends the job as failed ``time_limit``, and recording that must fit in here. A worker's shutdown grace
# (deploy/kubernetes/worker-gpu.yaml) must cover the hard limit, not only the soft one: killed while recording, the job
# stayed running until its lease ran out and then ran again, another attempt of up to the whole time limit.
JOB_HARD_LIMIT_MARGIN = 60
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(ValueError):
    """Raised when the environment holds an invalid or missing setting."""


@dataclass(frozen=True)
class Settings:
    """The platform's configuration. Field ``foo_bar`` is read from ``UPSCALER_FOO_BAR``."""

    env: str = "development"
    secret_key: str = ""
    secret_file: Path = Path("var/secret_key")
    api_keys: str = ""
    database_url: str = "sqlite:///var/upscaler.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage: str = "local"
    storage_dir: Path = Path("var/storage")
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = "upscaler"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_multipart_threshold_mb: int = 16
    s3_public_endpoint_url: str = ""
    public_url: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 0
    api_threads: int = 4
    max_upload_bytes: int = 50 * 1024 * 1024
    max_input_pixels: int = 40_000_000
    max_output_pixels: int = 1_000_000_000  # outputs streamed band by band (exact x2/x3/x4 without alpha)
    max_whole_output_pixels: int = 400_000_000  # outputs made whole in memory (resampled sizes, x8, alpha)
    result_url_ttl: int = 3600
    default_model: str = "auto"
    auto_fidelity_model: str = "residual_sr"
    auto_robust_model: str = "residual_sr_cond"
    models_dir: Path = PACKAGE_ROOT / "weights"
    tile_size: int = 256
    memory_budget_mb: int = 256  # activations per forward pass: 0.81 GiB peak for a 20 MP x4 (docs/benchmarks.md)
    # Outputs larger than this are computed and written in bands of at most this many pixels (worker.bands).
    band_output_pixels: int = 16_000_000
    # Outputs of at least this many pixels are split: their bands run as tasks on every free worker (0: never).
    split_output_pixels: int = 64_000_000
    job_time_limit: int = 3600
    lease_seconds: int = 120
    visibility_timeout: int = 0
    max_attempts: int = 3
    storage_outage_grace: int = 900  # seconds object storage may keep a job from finishing before it fails
    queued_stale_seconds: int = 600
    sweep_interval: float = 30.0
    enqueue_timeout: float = 2.0
    webhook_secret: str = ""
    webhook_timeout: float = 10.0
    webhook_retry_schedule: str = "5,30,120,600,1800,3600,7200,14400"
    webhook_allow_private: bool = False
    webhook_tenant_concurrency: int = 2
    input_fetch_timeout: float = 30.0
    idempotency_ttl: int = 86400
    rate_limit_per_minute: int = 600
    max_active_jobs: int = 100
    daily_megapixels: int = 20000
    retention_seconds: int = 7 * 86400
    worker_concurrency: int = 1
    worker_metrics_port: int = 0
    metrics_token: str = ""
    worker_start_timeout: float = 60.0
    worker_heartbeat_timeout: float = 180.0
    model_load_delay: float = 0.0
    log_format: str = "text"
    inference_threads: int = 0
    inference_precision: str = "auto"  # auto: bfloat16 where the CPU computes it natively, else float32

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def job_hard_time_limit(self) -> int:
        """Seconds after which Celery kills a job's task outright (``JOB_HARD_LIMIT_MARGIN``)."""
        return self.job_time_limit + JOB_HARD_LIMIT_MARGIN

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """Seconds to wait before each retry of a failed webhook delivery."""
        return tuple(float(v) for v in self.webhook_retry_schedule.split(",") if v.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, secret: bool = True, **overrides: Any) -> Settings:
        """Read ``UPSCALER_*`` variables (unknown ones are ignored), then apply ``overrides``. ``secret=False``: a
        command that signs nothing (``upscale``, ``eval``, ``train``, ``migrate``...) leaves the development secret
        alone; read or made by every command, it left ``var/secret_key`` wherever one ran, and failed where that
        folder cannot be written."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"UPSCALER_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, type(getattr(cls(), f.name)))
        settings = replace(cls(), **values, **overrides)
        if secret and not settings.secret_key and not settings.production:
            settings = replace(settings, secret_key=load_or_create_secret(settings.secret_file))
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields changed (tests and the dev launcher use this)."""
        settings = replace(self, **overrides)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``UPSCALER_*`` variables that reproduce these settings in a child process."""
        return {f"UPSCALER_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    def cautions(self) -> list[str]:
        """Settings allowed but dangerous where they are: said once by each long-running command as it starts, since
        a variable carried over from a shell or an old ``.env`` is easy to miss and costly to keep."""
        said = []
        if self.production and self.webhook_allow_private:
            said.append("UPSCALER_WEBHOOK_ALLOW_PRIVATE is on: every customer's webhook_url and image_url may reach "
                        "this deployment's own network (its storage, databases, admin APIs), with any path and "
                        "query; keep it off unless every key holder is trusted")
        return said

    def validate(self) -> None:
        if self.env not in ("development", "production", "test"):
            raise SettingsError("UPSCALER_ENV must be development, production or test")
        if self.log_format not in ("text", "json"):
            raise SettingsError("UPSCALER_LOG_FORMAT must be 'text' or 'json'")
        if self.inference_precision not in PRECISION_CHOICES:
            raise SettingsError(f"UPSCALER_INFERENCE_PRECISION must be one of {', '.join(PRECISION_CHOICES)}")
        if self.storage not in ("local", "s3"):
            raise SettingsError("UPSCALER_STORAGE must be 'local' or 's3'")
        if self.production and len(self.secret_key) < MIN_SECRET_LENGTH:
            raise SettingsError("UPSCALER_SECRET_KEY must be set to a random string of 16+ characters in production")
        if self.production and self.metrics_token and len(self.metrics_token) < MIN_SECRET_LENGTH:
            # the manifests' placeholder (CHANGE-ME) was accepted: a guessable token in front of every metric
            raise SettingsError(f"UPSCALER_METRICS_TOKEN must be {MIN_SECRET_LENGTH}+ random characters in production "
                                "(or empty: /metrics off)")
        if self.production and not self.public_url.startswith(("https://", "http://")):
            raise SettingsError("UPSCALER_PUBLIC_URL must be set in production (e.g. https://upscale.example.com): "
                                "links are built from it, never from a request's Host header")
        try:
            if any(not 0 <= d < math.inf for d in self.webhook_retry_delays):
                raise ValueError
        except ValueError as exc:
            raise SettingsError("UPSCALER_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from exc
        if self.webhook_secret and not _webhook_key_ok(self.webhook_secret):
            raise SettingsError("UPSCALER_WEBHOOK_SECRET must have the Standard Webhooks form whsec_<base64>, the "
                                f"base64 holding {MIN_WEBHOOK_KEY_BYTES}+ random bytes")
        if self.webhook_timeout > MAX_WEBHOOK_TIMEOUT:
            raise SettingsError(f"UPSCALER_WEBHOOK_TIMEOUT must be at most {MAX_WEBHOOK_TIMEOUT:g} seconds")
        if self.worker_heartbeat_timeout <= self.worker_start_timeout + HEARTBEAT_MARGIN:
            # a pool process beats first after the start timeout: a watchdog that waits less kills every worker
            raise SettingsError(f"UPSCALER_WORKER_HEARTBEAT_TIMEOUT ({self.worker_heartbeat_timeout:g}) must exceed "
                                f"UPSCALER_WORKER_START_TIMEOUT ({self.worker_start_timeout:g}) by more than "
                                f"{HEARTBEAT_MARGIN:g} s")
        for name in POSITIVE:
            if getattr(self, name) <= 0:
                raise SettingsError(f"UPSCALER_{name.upper()} must be positive")
        for name in NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise SettingsError(f"UPSCALER_{name.upper()} must be 0 or more (0: {NON_NEGATIVE[name]})")
        for name in ("api_port", "worker_metrics_port"):
            if getattr(self, name) > 65535:
                raise SettingsError(f"UPSCALER_{name.upper()} must be a TCP port (at most 65535)")
        for name in ("s3_endpoint_url", "s3_public_endpoint_url"):
            url = urlsplit(getattr(self, name))
            if getattr(self, name) and (url.scheme not in ("http", "https") or not url.hostname):
                raise SettingsError(f"UPSCALER_{name.upper()} must be an http(s)://host[:port] URL, or empty")
        if not _database_url_ok(self.database_url):
            raise SettingsError("UPSCALER_DATABASE_URL must be a SQLite or PostgreSQL URL: sqlite:///PATH or "
                                "postgresql://user:pass@host/db (postgres://, postgresql+DRIVER:// too)")
        if urlsplit(self.redis_url).scheme not in ("redis", "rediss"):  # what Celery's broker and redis-py both take
            raise SettingsError("UPSCALER_REDIS_URL must be a redis:// or rediss:// URL")
        if self.storage == "s3" and self.result_url_ttl > MAX_PRESIGNED_SECONDS:
            raise SettingsError(f"UPSCALER_RESULT_URL_TTL must be at most {MAX_PRESIGNED_SECONDS} (7 days) with S3 "
                                "storage: a presigned link cannot live longer")
        if self.s3_multipart_threshold_mb < MIN_S3_PART_MB:
            raise SettingsError(f"UPSCALER_S3_MULTIPART_THRESHOLD_MB must be at least {MIN_S3_PART_MB} (S3's smallest "
                                "part)")


def _database_url_ok(url: str) -> bool:
    """A URL SQLAlchemy reads, of a database the platform runs on (SQLite or PostgreSQL, any driver, in-memory
    SQLite, libpq's defaults): a typo (``postgress://``) was a 29-line traceback from whichever command first
    connected, not one line naming the setting."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return False
    return backend in ("sqlite", "postgresql", "postgres")


def _webhook_key_ok(secret: str) -> bool:
    """A ``whsec_`` secret whose key decodes (checked at start: a bad one would fail every delivery instead)."""
    try:
        return len(webhook_key(secret)) >= MIN_WEBHOOK_KEY_BYTES
    except ValueError:
        return False


def load_or_create_secret(path: Path) -> str:
    """The development secret: random, made on first start, kept in ``path`` (mode 0600) and shared by every
    process started from the same folder. Never a constant: a public default would let anyone forge links.

    The file appears whole or not at all (written beside it, then hard-linked into place): created in place, a
    process started at the same moment read it empty and signed with an empty key. A file that cannot be read or
    holds no usable secret is a ``SettingsError`` naming ``UPSCALER_SECRET_FILE``, not a bare OS error."""
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(32) + "\n")
                os.link(draft, path)
            except FileExistsError:  # another process won the race: its secret is the one
                pass
            finally:
                draft.unlink(missing_ok=True)
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"UPSCALER_SECRET_FILE ({path}) cannot be used for the development secret: {exc}; set "
                            "UPSCALER_SECRET_KEY or point UPSCALER_SECRET_FILE at a writable file") from exc
    if len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(f"UPSCALER_SECRET_FILE ({path}) holds no secret of {MIN_SECRET_LENGTH}+ characters: "
                            "delete it (a new one is made) or set UPSCALER_SECRET_KEY")
    return secret


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            word = raw.strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:  # a typo ("ture") must not quietly mean false
                raise ValueError
            return word in TRUE_WORDS
        if kind in (int, float):
            value = kind(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if issubclass(kind, Path):
            return Path(raw)
        return raw
    except ValueError as exc:
        words = f" ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})" if kind is bool else ""
        raise SettingsError(f"UPSCALER_{name.upper()}={raw!r} is not a valid {kind.__name__}{words}") from exc
