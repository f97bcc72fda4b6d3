"""Running the function binaries as AWS Lambda runs them, shared by tests/compat/test_lambda.py
(which checks what they answer) and scripts/bench-cold-starts (which times them):

- `lambda_env`: the environment the functions read on AWS, pointed at moto (or another endpoint);
- `v2_event`: an API Gateway HTTP API (payload 2.0) event; `first_events`: each function's
  first event;
- `RuntimeApi` and `first_answer`: a local Lambda Runtime API (2018-06-01; the `next`,
  `response` and `error` endpoints) for one invocation, and a function binary started cold
  under it until it answers that one event;
- `wait_for_port` and `stop`: the processes around them (`tollgate serve`, `cargo lambda watch`).
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUEST_ID = "cold-start-1"


def lambda_env(table, endpoint):
    """What the functions read on AWS: the table, the secret store, and here `endpoint` (moto's
    server) for both."""
    venv_bin = str(ROOT / os.environ.get("TOLLGATE_VENV", ".venv") / "bin")
    return {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ["PATH"],
        "TOLLGATE_STORE": "dynamodb",
        "TOLLGATE_DYNAMODB_ENDPOINT": endpoint,
        "TOLLGATE_TABLE": table,
        "TOLLGATE_SECRETS": "secretsmanager",
        "TOLLGATE_SECRETS_ENDPOINT": endpoint,
        "TOLLGATE_SECRETS_PREFIX": f"{table}/",
        "TOLLGATE_LOG": "warn",
    }


def wait_for_port(port, proc, what, timeout=60):
    """Waits until `proc` listens on `port`; the timeout only stops a process that never will."""
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


def first_events(admin, key):
    """Each function's first event, by group: a read behind a session (`admin`'s) or, for the
    proxy, an API key (`key`), so that init's clients make the first store reads."""
    return {
        "auth": v2_event("GET", "/admin/v1/me/sessions", token=admin),
        "tokens": v2_event("GET", "/admin/v1/me/api-keys", token=admin),
        "members": v2_event("GET", "/api/workspaces", token=admin),
        "providers": v2_event("GET", "/api/models", token=admin),
        "usage": v2_event("GET", "/api/usage", token=admin),
        "proxy": v2_event("GET", "/v1/models", token=key),
    }


def answered_ok(first):
    """Whether a first answer is a 200 to the invocation handed out (not an init or invocation
    error)."""
    return first.path == f"/2018-06-01/runtime/invocation/{REQUEST_ID}/response" and b'"statusCode":200' in first.answer


class RuntimeApi(ThreadingHTTPServer):
    """The Lambda Runtime API (2018-06-01) for one invocation: `next` hands out the event once
    (later calls wait, as Lambda's do between invocations); the first POST (`response`, or an
    `error`) records where it went, what it carried and when its head came."""

    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.event, self.handed = event, False
        self.answered, self.answer_path, self.answer, self.done = None, None, None, threading.Event()


class RuntimeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        if self.server.handed:
            self.server.done.wait(30)
            try:
                self.send_error(503)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the function was stopped while it waited: the invocation is over
            return
        self.server.handed = True
        body = json.dumps(self.server.event).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", REQUEST_ID)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:cold")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        # The answer's head is the first answer (a streamed one's body follows as it is made).
        first = self.server.answered is None
        self.server.answered = self.server.answered or time.perf_counter()
        length = self.headers.get("Content-Length")
        if length is not None:
            body = self.rfile.read(int(length))
        else:
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        if first:
            self.server.answer_path, self.server.answer = self.path, body
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.done.set()


# ms: from the process's start to the head of its first answer (a measurement, for the
# benchmark; tests assert on the rest). path: the Runtime API path it was posted to. answer:
# its body (a streamed answer's prelude and body together).
FirstAnswer = namedtuple("FirstAnswer", "ms path answer")


def first_answer(binary, event, env, wait_s=30, output=None):
    """Starts `binary` cold under a Runtime API of its own holding `event`, and returns its first
    answer, or raises AssertionError if none came in `wait_s` (a hung function, not a slow one).
    The function's log (its stdout, as Lambda sends it to CloudWatch) goes to `output`, a path,
    when one is given."""
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}", "AWS_LAMBDA_FUNCTION_NAME": "cold",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "s",
           "AWS_LAMBDA_LOG_GROUP_NAME": "g"}
    started = time.perf_counter()
    log = open(output, "wb") if output else subprocess.DEVNULL
    proc = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.DEVNULL)
    try:
        if not api.done.wait(wait_s):
            raise AssertionError(f"{binary} never answered (exit status {proc.poll()})")
        return FirstAnswer((api.answered - started) * 1000, api.answer_path, api.answer)
    finally:
        proc.kill()
        proc.wait()
        if output:
            log.close()
        api.shutdown()
        api.server_close()
