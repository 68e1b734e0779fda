"""Schemathesis against our own OpenAPI document, in-process: no 5xx, and every answer matches the schema.

Bounded: a fixed number of generated cases per operation with a fixed seed, so CI time stays flat. The
operations are driven through Hypothesis directly (the pytest plugin of schemathesis lags pytest releases).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def database_url(tmp_path):
    """One database is enough here (SQLite): the fuzzer tests the HTTP contract, not the SQL dialect."""
    from shared.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(url)
    return url


@pytest.fixture
def loopback_only_dns(monkeypatch):
    """Generated image_url and webhook_url values name real-looking hosts (gbq.com, ...): the API resolves each
    to check it, so any name but a loopback one fails to resolve here, as it would offline (no DNS query leaves
    the machine), and the API answers its documented refusal."""
    import ipaddress
    import socket

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        try:
            loopback = ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
        except ValueError:
            loopback = str(host).lower() == "localhost"
        if not loopback:
            raise socket.gaierror(socket.EAI_NONAME, "not resolved in this test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def test_every_operation_honours_the_schema(app, loopback_only_dns):
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(checks=CHECKS)

        fuzz()
