"""The functions as AWS Lambda runs them, on DynamoDB and Secrets Manager (moto's server, which
scripts/test starts):

- `cargo lambda watch` (from the test venv) serves each function from its crate; every group's
  routes are driven with API Gateway HTTP API (v2) events through its Invoke API, and the proxy
  through its Function URL path, streaming included (chunks arrive as the model makes them).
- cold starts: each function binary started under a local Lambda Runtime API (the protocol's
  `next`/`response` endpoints, in this file) answers its first event, from process start, in
  under 100 ms, its AWS SDK clients built in init and its first store reads included.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BINARY, ROOT, call, free_port

MOTO = os.environ.get("TOLLGATE_TEST_DYNAMODB_ENDPOINT")
pytestmark = pytest.mark.skipif(not MOTO, reason="needs moto's server: run through scripts/test")

GROUPS = ["auth", "tokens", "members", "providers", "usage", "proxy"]
COLD_START_LIMIT_MS = 100


def lambda_env(table):
    """What the functions read on AWS: the table, the secret store, and (here) moto's endpoint."""
    venv_bin = str(ROOT / os.environ.get("TOLLGATE_VENV", ".venv") / "bin")
    return {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ["PATH"],
        "TOLLGATE_STORE": "dynamodb",
        "TOLLGATE_DYNAMODB_ENDPOINT": MOTO,
        "TOLLGATE_TABLE": table,
        "TOLLGATE_SECRETS": "secretsmanager",
        "TOLLGATE_SECRETS_ENDPOINT": MOTO,
        "TOLLGATE_SECRETS_PREFIX": f"{table}/",
        "TOLLGATE_LOG": "warn",
    }


def wait_for_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def v2_event(method, path, body=None, token=None, query=""):
    """An API Gateway HTTP API (payload 2.0) event, as the HTTP API sends it to a function."""
    headers = {"host": "api.example.com", "content-type": "application/json", "user-agent": "test"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": headers,
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "time": "02/Dec/2026:12:00:00 +0000", "timeEpoch": int(time.time() * 1000)},
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
    }


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


class RuntimeApi(ThreadingHTTPServer):
    """The Lambda Runtime API (2018-06-01) for one invocation: `next` hands out the event once
    (later calls wait, as Lambda's do between invocations); `response` and `error` record the
    answer and when it came."""

    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.event, self.handed, self.answered, self.answer, self.done = event, False, None, None, threading.Event()


class RuntimeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        if self.server.handed:
            self.server.done.wait(30)
            self.send_error(503)
            return
        self.server.handed = True
        body = json.dumps(self.server.event).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-start-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:cold")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        # The answer's head is the first answer (a streamed one's body follows as it is made).
        self.server.answered = self.server.answered or time.perf_counter()
        length = self.headers.get("Content-Length")
        if length is not None:
            self.server.answer = self.rfile.read(int(length))
        else:
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.server.answer = b"".join(chunks)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.done.set()


def cold_start(binary, event, env):
    """Milliseconds from the function's process start to its first answer, and the answer."""
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}", "AWS_LAMBDA_FUNCTION_NAME": "cold",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "s",
           "AWS_LAMBDA_LOG_GROUP_NAME": "g"}
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert api.done.wait(30), f"{binary} never answered"
        return (api.answered - started) * 1000, api.answer
    finally:
        proc.kill()
        proc.wait()
        api.shutdown()


def test_each_function_starts_cold_in_under_100_ms(table, watches):
    # After the watch test: the table has an admin, a model and a key to read.
    admin = call_login(watches)
    key = invoke(watches["tokens"], "tollgate-tokens", "POST", "/admin/v1/me/api-keys", {"name": "cold"}, admin)[1]["key"]
    events = {
        "auth": v2_event("GET", "/admin/v1/me/sessions", token=admin),
        "tokens": v2_event("GET", "/admin/v1/me/api-keys", token=admin),
        "members": v2_event("GET", "/api/workspaces", token=admin),
        "providers": v2_event("GET", "/api/models", token=admin),
        "usage": v2_event("GET", "/api/usage", token=admin),
        "proxy": v2_event("GET", "/v1/models", token=key),
    }
    # The debug builds the test command makes; TOLLGATE_LAMBDA_BIN_DIR measures others (the
    # README's figures are of release code).
    bins = os.environ.get("TOLLGATE_LAMBDA_BIN_DIR", str(ROOT / "target" / "debug"))
    figures = {}
    for group, event in events.items():
        binary = os.path.join(bins, f"tollgate-{group}")
        runs = [cold_start(binary, event, lambda_env(table)) for _ in range(3)]
        for _, answer in runs:
            assert b'"statusCode":200' in answer, answer[:300]
        figures[group] = min(ms for ms, _ in runs)
    print("cold starts (ms, best of 3, %s): %s" % (bins, ", ".join(f"{g} {ms:.0f}" for g, ms in figures.items())))
    slow = {g: round(ms) for g, ms in figures.items() if ms >= COLD_START_LIMIT_MS}
    assert not slow, f"cold starts of {COLD_START_LIMIT_MS} ms or more: {slow}"


def call_login(watches):
    status, body = invoke(watches["auth"], "tollgate-auth", "POST", "/api/auth/login", {"email": "lambda@example.com", "password": "lambda test password"})
    assert status == 200, body
    return body["token"]
