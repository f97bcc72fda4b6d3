"""The functions as AWS Lambda runs them, on DynamoDB and Secrets Manager (moto's server, which
scripts/test starts):

- `cargo lambda watch` (from the test venv) serves each function from its crate; every group's
  routes are driven with API Gateway HTTP API (v2) events through its Invoke API, and the proxy
  through its Function URL path, streaming included (chunks arrive as the model makes them).
- cold starts: each function binary, started under a local Lambda Runtime API (the protocol's
  `next`/`response` endpoints, in lambda_harness.py), answers the first event it is handed:
  configuration, the AWS SDK clients and the router built in init, then the event's store
  reads (a session or key check and the route's query) against moto. How long that takes is
  not asserted here (a busy machine is slow, not wrong): scripts/bench-cold-starts measures it
  with the same harness.
"""

import base64
import json
import os
import subprocess
import time
import urllib.request
import uuid

import jsonschema
import pytest

import lambda_harness
from conftest import BINARY, ROOT, call, free_port
from lambda_harness import answered_ok, first_answer, first_events, stop, v2_event, wait_for_port

MOTO = os.environ.get("TOLLGATE_TEST_DYNAMODB_ENDPOINT")
pytestmark = pytest.mark.skipif(not MOTO, reason="needs moto's server: run through scripts/test")

GROUPS = ["auth", "tokens", "members", "providers", "usage", "proxy"]


def lambda_env(table):
    """What the functions read on AWS: the table, the secret store, and (here) moto's endpoint."""
    return lambda_harness.lambda_env(table, MOTO)


@pytest.fixture(scope="module")
def table():
    """A table of its own on moto, made as `tollgate serve --create-table` makes it."""
    name = f"lambda-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**lambda_env(name), "TOLLGATE_LISTEN": f"127.0.0.1:{port}"}
    proc = subprocess.Popen([BINARY, "serve", "--create-table"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, "tollgate serve --create-table")
    finally:
        stop(proc)
    return name


@pytest.fixture(scope="module")
def watches(table):
    """One `cargo lambda watch` per function crate, each on its own port: (group -> port)."""
    procs, ports = [], {}
    try:
        for group in GROUPS:
            port = free_port()
            log = open(ROOT / "target" / f"cargo-lambda-watch-{group}.log", "w")
            proc = subprocess.Popen(["cargo", "lambda", "watch", "--invoke-port", str(port), "--ignore-changes"],
                                    cwd=ROOT / "functions" / group, env=lambda_env(table), stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_for_port(port, proc, f"cargo lambda watch ({group})")
            ports[group] = port
        yield ports
    finally:
        for proc in procs:
            stop(proc)


def invoke(port, function, method, path, body=None, token=None, query=""):
    """Invokes `function` with a v2 event; returns (status, JSON body)."""
    event = json.dumps(v2_event(method, path, body, token, query)).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations", data=event, method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    text = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    return answer["statusCode"], (json.loads(text) if text else None)


def test_cargo_lambda_watch_serves_every_group_and_streams_the_proxy(watches):
    status, body = invoke(watches["auth"], "tollgate-auth", "GET", "/api/setup/status")
    assert (status, body) == (200, {"configured": False})
    status, body = invoke(watches["auth"], "tollgate-auth", "POST", "/api/setup/first-admin", {"email": "lambda@example.com", "password": "lambda test password"})
    assert status == 201, body
    admin = body["token"]
    status, body = invoke(watches["auth"], "tollgate-auth", "POST", "/api/auth/login", {"email": "lambda@example.com", "password": "lambda test password"})
    assert status == 200, body
    # The session the auth function issued is honoured by every other function.
    model = {"id": "mock-lambda", "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 4096}
    assert invoke(watches["providers"], "tollgate-providers", "POST", "/api/models", model, admin)[0] == 201
    status, body = invoke(watches["providers"], "tollgate-providers", "GET", "/api/models", token=admin)
    assert status == 200 and "mock-lambda" in json.dumps(body)
    status, body = invoke(watches["tokens"], "tollgate-tokens", "POST", "/admin/v1/me/api-keys", {"name": "lambda"}, admin)
    assert status == 201, body
    key = body["key"]
    status, body = invoke(watches["members"], "tollgate-members", "POST", "/api/workspaces", {"name": "Lambda team"}, admin)
    assert status == 201, body
    assert invoke(watches["members"], "tollgate-members", "GET", "/api/workspaces", token=admin)[0] == 200
    # The proxy behind its Function URL: whole and streamed.
    url = f"http://127.0.0.1:{watches['proxy']}/lambda-url/tollgate-proxy"
    models = call(url, "GET", "/v1/models", token=key)
    assert [m["id"] for m in models["data"]] == ["mock-lambda"]
    answer = call(url, "POST", "/v1/chat/completions", {"model": "mock-lambda", "messages": [{"role": "user", "content": "hello lambda"}]}, key)
    assert answer["choices"][0]["message"]["content"].endswith("hello lambda")
    request = urllib.request.Request(url + "/v1/chat/completions", method="POST", data=json.dumps(
        {"model": "mock-lambda", "stream": True, "messages": [{"role": "user", "content": "x [mock:words=4] [mock:delay_ms=300]"}]}).encode())
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    started = time.time()
    arrivals, text = [], ""
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append(time.time() - started)
                chunk = json.loads(line[6:])
                text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
    assert text == "alpha bravo charlie delta"
    assert arrivals[-1] - arrivals[0] > 0.6, f"the chunks arrived as made, not all at the end: {arrivals}"
    # Every request is in the usage the usage function reads.
    status, body = invoke(watches["usage"], "tollgate-usage", "GET", "/api/usage", token=admin)
    assert status == 200 and len(body["records"]) == 2, body


def test_each_function_answers_its_first_event_cold(table, watches):
    # After the watch test: the table has an admin, a model and a key to read.
    admin = call_login(watches)
    key = invoke(watches["tokens"], "tollgate-tokens", "POST", "/admin/v1/me/api-keys", {"name": "cold"}, admin)[1]["key"]
    events = first_events(admin, key)
    # The debug builds the test command makes; TOLLGATE_LAMBDA_BIN_DIR checks others.
    bins = os.environ.get("TOLLGATE_LAMBDA_BIN_DIR", str(ROOT / "target" / "debug"))
    answers = {}
    for group, event in events.items():
        first = answers[group] = first_answer(os.path.join(bins, f"tollgate-{group}"), event, lambda_env(table))
        # A 200 to the invocation it was handed (not an init or invocation error): the clients
        # built in init reached the store, and the session or key checked out.
        assert answered_ok(first), (group, first.path, first.answer[:300])
    # The proxy's answer (its Function URL's streamed one) lists the model the table holds.
    assert b"mock-lambda" in answers["proxy"].answer, answers["proxy"].answer[:300]


def test_the_proxy_function_logs_its_metrics_as_emf(table, watches):
    """Inside Lambda, each settled request leaves one EMF line in the function's log (its
    stdout): valid by the format's schema, naming members that are there, with the request's
    figures."""
    admin = call_login(watches)
    key = invoke(watches["tokens"], "tollgate-tokens", "POST", "/admin/v1/me/api-keys", {"name": "emf"}, admin)[1]["key"]
    bins = os.environ.get("TOLLGATE_LAMBDA_BIN_DIR", str(ROOT / "target" / "debug"))
    schema = json.loads((ROOT / "tests" / "compat" / "emf_schema.json").read_text())
    documents = []
    for n, body in enumerate([
        {"model": "mock-lambda", "messages": [{"role": "user", "content": "hello emf"}]},
        {"model": "mock-lambda", "stream": True, "messages": [{"role": "user", "content": "x [mock:words=4]"}]},
    ]):
        output = ROOT / "target" / f"emf-proxy-{n}.log"
        first = first_answer(os.path.join(bins, "tollgate-proxy"), v2_event("POST", "/v1/chat/completions", body, key), lambda_env(table), output=output)
        assert answered_ok(first), first.answer[:300]
        for line in output.read_text(errors="replace").splitlines():
            # A log event is the whole line: the object, nothing before or after it.
            if line.startswith("{") and '"_aws"' in line:
                documents.append(json.loads(line))
    requests = [d for d in documents if "Requests" in d]
    assert len(requests) == 2, documents
    for document in documents:
        jsonschema.validate(document, schema)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                for name in dimension_set:
                    assert isinstance(document[name], str) and 0 < len(document[name]) <= 1024, name
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                assert isinstance(value, (int, float)) or (isinstance(value, list) and len(value) <= 100), metric
    for document in requests:
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Tollgate"
        assert (document["Model"], document["Provider"], document["Outcome"]) == ("mock-lambda", "mock", "success")
        assert document["Requests"] == 1 and document["UpstreamAttempts"] == 1
        assert document["Latency"] >= document["GatewayLatency"] >= 0
    streamed = [d for d in requests if "TimeToFirstToken" in d]
    assert len(streamed) == 1 and streamed[0]["OutputTokens"] == 4, requests


def call_login(watches):
    status, body = invoke(watches["auth"], "tollgate-auth", "POST", "/api/auth/login", {"email": "lambda@example.com", "password": "lambda test password"})
    assert status == 200, body
    return body["token"]
