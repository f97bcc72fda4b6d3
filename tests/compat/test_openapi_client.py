"""/openapi.json is a valid OpenAPI document that clients can be generated from: it passes
openapi-spec-validator with unique operationIds, openapi-python-client generates a client
from it without a warning (its ruff post-hooks included), and that client, through its
generated functions and models only, signs in, adds a model, creates an API key, makes a
chat completion with it and lists the usage it left. Run by scripts/test after `cargo test`."""

import collections
import importlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from conftest import running_gateway

EMAIL = "client@example.com"
# What conftest's running_gateway gives the first admin.
PASSWORD = "compat test password"
PACKAGE = "tollgate_client"
# The generator skips bodies of content types it does not know; the export streams NDJSON,
# which a client reads as bytes.
GENERATOR_CONFIG = "content_type_overrides:\n  application/x-ndjson: application/octet-stream\n"


@pytest.fixture(scope="module")
def gateway():
    with running_gateway(EMAIL) as (base, admin):
        yield base, admin


@pytest.fixture(scope="module")
def document(gateway):
    with urllib.request.urlopen(gateway[0] + "/openapi.json") as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def generated(document, tmp_path_factory):
    """Runs openapi-python-client (the one in this Python's environment) on the document;
    yields (the command's exit status, its output, the directory the package is in)."""
    work = tmp_path_factory.mktemp("generated")
    (work / "openapi.json").write_text(json.dumps(document))
    (work / "config.yaml").write_text(GENERATOR_CONFIG)
    bin_dir = Path(sys.executable).parent
    # Its post-hooks (ruff check --fix, ruff format) look for ruff on PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    run = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(work / "openapi.json"),
         "--config", str(work / "config.yaml"), "--output-path", str(work / PACKAGE), "--meta", "none",
         "--fail-on-warning"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    return run.returncode, run.stdout, work


def test_the_document_is_valid(document):
    try:
        validate(document)
    except OpenAPIValidationError as error:
        pytest.fail(f"openapi-spec-validator rejects /openapi.json: {error}")
    ids = collections.defaultdict(list)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                ids[operation["operationId"]].append(f"{method.upper()} {path}")
    duplicates = {name: where for name, where in ids.items() if len(where) > 1}
    assert not duplicates, f"operationIds used more than once: {duplicates}"


def test_a_client_generates_without_warnings(generated):
    status, output, work = generated
    assert status == 0, f"openapi-python-client failed (exit {status}):\n{output}"
    assert "warning" not in output.lower() and "error" not in output.lower(), f"openapi-python-client warned:\n{output}"
    assert (work / PACKAGE / "__init__.py").exists(), output


def api(name):
    return importlib.import_module(f"{PACKAGE}.{name}")


def parsed(response, status):
    """The generated model of a generated function's answer, after checking its status."""
    assert response.status_code == status, f"{response.status_code}: {response.content!r}"
    assert response.parsed is not None, response.content
    return response.parsed


def test_the_generated_client_signs_in_creates_a_key_and_lists_usage(gateway, generated):
    status, output, work = generated
    assert status == 0, output
    sys.path.insert(0, str(work))
    try:
        client = importlib.import_module(PACKAGE)
        models = api("models")
    finally:
        sys.path.remove(str(work))
    base = gateway[0]

    with client.Client(base_url=base, raise_on_unexpected_status=True) as anonymous:
        session = parsed(api("api.auth.login").sync_detailed(client=anonymous, body=models.Credentials(email=EMAIL, password=PASSWORD)), 200)
    assert isinstance(session, models.SessionResponse)
    assert session.user.email == EMAIL

    with client.AuthenticatedClient(base_url=base, token=session.token, raise_on_unexpected_status=True) as admin:
        me = parsed(api("api.me.get_me").sync_detailed(client=admin), 200)
        assert me.email == EMAIL

        model = parsed(api("api.models.create_model").sync_detailed(client=admin, body=models.CreateModel(
            id="mock-generated", provider="mock", input_price=0.0, output_price=2000.0, context_window=4096)), 201)
        assert isinstance(model, models.ModelView) and model.id == "mock-generated"

        key = parsed(api("api.me.create_key").sync_detailed(client=admin, body=models.CreateKey(name="generated")), 201)
        assert isinstance(key, models.KeyView)
        assert isinstance(key.key, str) and key.key.startswith("tg_"), key
        assert key.name == "generated"

        with client.AuthenticatedClient(base_url=base, token=key.key, raise_on_unexpected_status=True) as proxy:
            body = models.ChatCompletionsBody.from_dict({"model": "mock-generated", "messages": [{"role": "user", "content": "hello generated client"}], "max_tokens": 50})
            answer = parsed(api("api.proxy.chat_completions").sync_detailed(client=proxy, body=body), 200)
            assert isinstance(answer, models.ChatCompletionsResponse200)

        # The usage record may be written just after the answer.
        for _ in range(100):
            page = parsed(api("api.usage.query_usage").sync_detailed(client=admin, model="mock-generated"), 200)
            if page.records:
                break
            time.sleep(0.05)
        assert isinstance(page, models.UsagePage)
        assert [r.model for r in page.records] == ["mock-generated"], page

        logs = parsed(api("api.me.usage_logs").sync_detailed(client=admin, model="mock-generated"), 200)
        assert isinstance(logs, models.LogPage)
        assert len(logs.data) == 1, logs

        summary = parsed(api("api.me.summary").sync_detailed(client=admin), 200)
        assert summary is not None
