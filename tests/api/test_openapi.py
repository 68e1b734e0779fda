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
    assert "image" in form["required"]


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
