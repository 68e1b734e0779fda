"""The OpenAPI document is valid and describes every route, from the same schemas that validate."""

import re
from pathlib import Path

from openapi_spec_validator import validate

from shared.errors import API_ERRORS, JOB_ERRORS


def test_openapi_document_is_valid_and_complete(app, client):
    spec = client.get("/v1/openapi.json").get_json()
    validate(spec)
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {rule.rule} is not in the OpenAPI document"


def test_submit_form_schema_comes_from_the_validating_model(client):
    spec = client.get("/v1/openapi.json").get_json()
    form = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["scale"]["anyOf"][0]["maximum"] == 8
    assert form["properties"]["fit"]["enum"] == ["contain", "cover", "fill"]
    assert form["properties"]["quality"]["anyOf"][0]["maximum"] == 100
    assert form["oneOf"] == [{"required": ["image"]}, {"required": ["image_url"]}]  # either one, not both


def test_query_parameters_the_routes_read_are_documented(client):
    """The signed file link's and redeliver's parameters were once read by the routes but not in the document."""
    spec = client.get("/v1/openapi.json").get_json()["paths"]

    def query(path, method):
        return {p["name"] for p in spec[path][method].get("parameters", []) if p["in"] == "query"}

    assert query("/v1/files/{key}", "get") == {"expires", "signature", "name"}
    assert query("/v1/jobs/{job_id}/deliveries/redeliver", "post") == {"delivery_id"}
    assert {"200", "401", "404"} <= set(spec["/metrics"]["get"]["responses"])
    assert all("default" in op["responses"] for ops in spec.values() for op in ops.values())


def test_every_error_code_is_documented():
    text = Path("docs/errors.md").read_text()
    for code, error in API_ERRORS.items():
        assert f"`{code}`" in text and str(error.status) in text


def test_every_job_failure_code_is_documented():
    text = Path("docs/errors.md").read_text().split("## Job failure codes", 1)[1]
    for code in JOB_ERRORS:
        assert f"`{code}`" in text


def test_examples_in_the_document_are_valid_instances_of_their_schemas(client):
    """Examples are data, not prose: each one is parsed by the model it illustrates, so it cannot drift."""
    from api.schemas import JobCreateForm, Problem
    from shared.job_view import JobOut

    document = client.get("/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    form = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    for model, examples in ((JobOut, schemas["JobOut"]["examples"]), (Problem, schemas["Problem"]["examples"]),
                            (JobCreateForm, form["examples"])):
        assert examples
        for example in examples:
            model.model_validate(example)


def test_submit_documents_the_headers_each_answer_carries(client):
    """Its own 429 kept out the common one's Retry-After and RateLimit headers (the one route whose 429 waits up
    to a day); its 200 advertised Retry-After, which a 200 never carries, and Preference-Applied was nowhere."""
    responses = client.get("/v1/openapi.json").get_json()["paths"]["/v1/jobs"]["post"]["responses"]
    every = {"X-Request-Id", "RateLimit-Policy", "RateLimit"}  # on every answer past authentication
    assert set(responses["429"]["headers"]) == {"Retry-After", *every}
    assert set(responses["200"]["headers"]) == {"Location", "Preference-Applied", *every}
    assert set(responses["202"]["headers"]) == {"Location", "Retry-After", *every}
    assert set(responses["401"]["headers"]) == {"X-Request-Id", "WWW-Authenticate"}


def test_the_document_is_built_once_per_process(client, monkeypatch):
    """It was rebuilt for every request (50 ms of a core each, anonymous and not rate-limited)."""
    from api.routes import meta

    first = client.get("/v1/openapi.json")

    def rebuilt(app):
        raise AssertionError("the document was built again")

    monkeypatch.setattr(meta, "build_spec", rebuilt)
    again = client.get("/v1/openapi.json")
    assert again.status_code == 200 and again.get_json() == first.get_json()


# Headers a client acts on; each one a real answer carries must be in the document for that answer's status
ACTED_ON = ("X-Request-Id", "Retry-After", "RateLimit", "RateLimit-Policy", "WWW-Authenticate", "Cache-Control",
            "Content-Range", "Location")


def test_every_header_real_answers_carry_is_in_the_document(settings, db_session):
    """The document said nothing of X-Request-Id, gave the RateLimit headers only on 429, and left out Retry-After
    on a running job's 200 and on 503, WWW-Authenticate on 401 and Cache-Control on the webhook secret: a client
    generated from it dropped them. Real answers of several kinds are checked against it, header by header."""
    import io

    from api import create_app
    from shared.tenants import env_tenant
    from tests.api.test_read import succeeded_job
    from tests.conftest import image_bytes
    from tests.factories import make_job

    app = create_app(settings.with_overrides(api_keys="k-one"))
    client = app.test_client()
    spec = client.get("/v1/openapi.json").get_json()
    auth = {"Authorization": "Bearer k-one"}
    running = make_job(db_session, status="running", tenant=env_tenant("k-one"))
    done = succeeded_job(app, db_session, tenant=running.tenant)
    form = {"scale": "2", "model": "bicubic", "image": (io.BytesIO(image_bytes()), "photo.png")}
    answers = [
        ("/v1/jobs", "post", client.post("/v1/jobs", data=form, headers=auth, content_type="multipart/form-data")),
        ("/v1/jobs/{job_id}", "get", client.get(f"/v1/jobs/{running.id}", headers=auth)),
        ("/v1/jobs/{job_id}", "get", client.get(f"/v1/jobs/{'0' * 32}", headers=auth)),
        ("/v1/jobs", "get", client.get("/v1/jobs")),  # no key: 401
        ("/v1/webhooks/secret", "get", client.get("/v1/webhooks/secret", headers=auth)),
        ("/v1/usage", "get", client.get("/v1/usage", headers=auth)),  # no-store, undocumented there
        ("/v1/jobs/{job_id}/result", "get", client.get(f"/v1/jobs/{done.id}/result",
                                                        headers={**auth, "Range": "bytes=0-3"})),
        ("/v1/jobs/{job_id}/result", "get", client.get(f"/v1/jobs/{done.id}/result",
                                                        headers={**auth, "Range": "bytes=999999-"})),
    ]
    statuses = set()
    for path, method, response in answers:
        documented = spec["paths"][path][method]["responses"].get(str(response.status_code))
        assert documented is not None, f"{method} {path} answered {response.status_code}, undocumented"
        for name in ACTED_ON:
            if name in response.headers:
                assert name in documented.get("headers", {}), f"{name} on {response.status_code} of {method} {path}"
        statuses.add(response.status_code)
    assert statuses == {202, 200, 404, 401, 206, 416}
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert "request_id" in problem


def test_a_missing_asset_is_the_problem_json_the_document_declares(client):
    """The page's and the reference's asset routes answer a missing file with problem JSON, which the document
    declared as a 404 with no content (a generated client read no body)."""
    spec = client.get("/v1/openapi.json").get_json()["paths"]
    for route, path in (("/assets/{name}", "/assets/nope.js"), ("/docs/assets/{name}", "/docs/assets/nope.js")):
        answer = client.get(path)
        declared = spec[route]["get"]["responses"]["404"]["content"]
        assert answer.status_code == 404 and answer.content_type in declared, (route, answer.content_type)
        assert answer.get_json()["code"] == "not_found"
