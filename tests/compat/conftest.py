"""What the tests against the local `tollgate` binary share: starting it on a free port with
a fresh data directory, creating the first admin, and calling its JSON API."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("TOLLGATE_BIN", str(ROOT / "target" / "debug" / "tollgate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


@contextmanager
def running_gateway(admin_email, env_extra=None, log_path=None, data=None):
    """A `tollgate serve` of its own; yields (base URL, the first admin's session token), or
    (base URL, None) with no admin yet when `admin_email` is None. Its output goes to
    `log_path` (a file in its data directory by default), never to a pipe nobody reads."""
    port = free_port()
    data = data or tempfile.mkdtemp()
    # The services integrations talk to point at a closed local port: fuzzed tokens and
    # dataset URLs are checked against nothing outside the machine.
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "TOLLGATE_LISTEN": f"127.0.0.1:{port}",
        "TOLLGATE_DATA_DIR": data,
        "TOLLGATE_OPENROUTER_URL": f"{nowhere}/api/v1",
        "TOLLGATE_HUGGINGFACE_URL": f"{nowhere}/v1",
        "TOLLGATE_HUGGINGFACE_HUB_URL": nowhere,
        **(env_extra or {}),
    }
    log = open(log_path or os.path.join(data, "gateway.log"), "wb")
    proc = subprocess.Popen([BINARY, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            call(base, "GET", "/api/setup/status")
            break
        except OSError:
            time.sleep(0.05)
    admin = None
    if admin_email is not None:
        admin = call(base, "POST", "/api/setup/first-admin", {"email": admin_email, "password": "compat test password"})["token"]
    try:
        yield base, admin
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        log.close()
