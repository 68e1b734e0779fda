"""Fixtures: settings, app, client and databases, backed by real services started once per run."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from cli.processes import start_redis, stop
from shared.db import make_engine, make_session_factory
from shared.migrate import upgrade
from shared.settings import Settings
from shared.storage import S3Storage
from tests.harness import MotoS3, PostgresCluster
from tests.images import image_bytes
from tests.receiver import Receiver

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _QuietRequests(WSGIRequestHandler):
    """No request line per call: werkzeug's logger, given a handler on the stream of whichever test logged first
    (a captured one, closed since), printed "--- Logging error ---" tracebacks into later tests' output."""

    def log_request(self, *_args) -> None:
        pass


SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    process, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop(process)


@pytest.fixture(scope="session")
def postgres() -> PostgresCluster:
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def s3() -> MotoS3:
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    upgrade(url)
    return url


@pytest.fixture
def settings(database_url, redis_url, tmp_path) -> Settings:
    # float32 pinned: the same numbers on every CI machine (bf16 is tested on its own, tests/worker/test_precision.py)
    return Settings(env="test", secret_key=SECRET, database_url=database_url, redis_url=redis_url,
                    storage="local", storage_dir=tmp_path / "storage", enqueue_timeout=1.0,
                    webhook_allow_private=True, webhook_retry_schedule="0.2,0.4,0.8", webhook_timeout=3.0,
                    inference_precision="float32")


@pytest.fixture
def s3_settings(settings, s3) -> Settings:
    bucket = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_settings = settings.with_overrides(storage="s3", s3_endpoint_url=s3.endpoint, s3_bucket=bucket,
                                          s3_access_key_id="testing", s3_secret_access_key="testing",
                                          s3_multipart_threshold_mb=5)
    S3Storage(bucket, s3.endpoint, access_key_id="testing", secret_access_key="testing").ensure_bucket()
    return s3_settings


@pytest.fixture
def app(settings):
    from api import create_app

    application = create_app(settings)
    yield application
    application.extensions["upscaler"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_session(settings):
    engine = make_engine(settings.database_url)
    session = make_session_factory(engine)()
    yield session
    session.close()
    engine.dispose()


@pytest.fixture
def loopback_connections_only(monkeypatch):
    """A connection to any address but loopback fails, and fails the test: for tests whose product code is
    handed (or redirected to) an outside address and must refuse it before connecting."""
    import ipaddress
    import socket

    attempted: list[str] = []
    real = socket.socket.connect

    def guarded(sock, address):
        if isinstance(address, tuple) and not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:
            attempted.append(str(address[0]))
            raise OSError(f"this test allows loopback connections only, not {address[0]}")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempted
    assert attempted == [], f"connections were attempted to {attempted}"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def write_image(path: Path, **kwargs) -> Path:
    path.write_bytes(image_bytes(**kwargs))
    return path


@pytest.fixture
def api_server(settings):
    """The API over real HTTP on loopback (for the SDK and the CLI): (base URL, app)."""
    from api import create_app

    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietRequests)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
