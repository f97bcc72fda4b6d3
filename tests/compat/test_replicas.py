"""Several gateway processes on one DynamoDB (moto's server) share every limit exactly: three
`tollgate serve` processes on one table, 300 concurrent requests spread over them against a
token whose limit has room for N calls, and exactly N are served; a revoked key stops working
on every process within the key cache's bound (TOLLGATE_KEY_CACHE_SECS)."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import lambda_harness
from conftest import BINARY, call, free_port
from lambda_harness import stop, wait_for_port

MOTO = os.environ.get("TOLLGATE_TEST_DYNAMODB_ENDPOINT")
pytestmark = pytest.mark.skipif(not MOTO, reason="needs moto's server: run through scripts/test")

REPLICAS = 3
ROOM = 37
REQUESTS = 300
# moto's single-threaded server drops connections past its listen queue (128): the requests
# are concurrent, a few dozen at a time, as several replicas' pools would be on DynamoDB.
IN_FLIGHT = 48
KEY_CACHE_SECS = 1


def chat(base, key):
    """One chat completion: its status."""
    body = json.dumps({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(base + "/v1/chat/completions", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Three `tollgate serve` on one table of their own (the first creates it): their base URLs."""
    table = f"replicas-{uuid.uuid4().hex[:8]}"
    env = {**lambda_harness.lambda_env(table, MOTO), "TOLLGATE_KEY_CACHE_SECS": str(KEY_CACHE_SECS)}
    procs, bases = [], []
    try:
        for i in range(REPLICAS):
            port = free_port()
            data = tmp_path_factory.mktemp(f"replica{i}")
            log = open(data / "gateway.log", "wb")
            args = [BINARY, "serve"] + (["--create-table"] if i == 0 else [])
            proc = subprocess.Popen(args, env={**env, "TOLLGATE_LISTEN": f"127.0.0.1:{port}", "TOLLGATE_DATA_DIR": str(data)}, stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            wait_for_port(port, proc, f"tollgate serve (replica {i})")
            bases.append(f"http://127.0.0.1:{port}")
        yield bases
    finally:
        for proc in procs:
            stop(proc)


def test_three_replicas_serve_exactly_what_a_limit_has_room_for(replicas):
    first = replicas[0]
    admin = call(first, "POST", "/api/setup/first-admin", {"email": "admin@example.com", "password": "compat test password"})["token"]
    call(first, "POST", "/api/models", {"id": "mock-1", "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 8000}, admin)
    call(first, "POST", "/api/projects", {"name": "Shared", "slug": "shared", "models": ["mock-1"]}, admin)
    # A lifetime limit: real processes run on the wall clock, and a daily one would start afresh
    # at midnight in the middle of the burst.
    token = call(first, "POST", "/api/projects/shared/tokens", {"name": "t", "limits": [{"metric": "calls", "limit": ROOM, "window": "never"}]}, admin)["token"]

    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        statuses = list(pool.map(lambda i: chat(replicas[i % REPLICAS], token), range(REQUESTS)))
    served = statuses.count(200)
    assert served == ROOM, f"{served} served across {REPLICAS} replicas with room for {ROOM}: {sorted(set(statuses))}"
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    # Every replica served some of them: the room was shared, not one replica's alone.
    by_replica = [sum(1 for i, s in enumerate(statuses) if s == 200 and i % REPLICAS == r) for r in range(REPLICAS)]
    assert all(by_replica), by_replica


def test_a_revoked_key_stops_working_on_every_replica_within_the_key_cache(replicas):
    first = replicas[0]
    admin = call(first, "POST", "/api/auth/login", {"email": "admin@example.com", "password": "compat test password"})["token"]
    created = call(first, "POST", "/admin/v1/me/api-keys", {"name": "revoked soon"}, admin)
    for base in replicas:
        assert chat(base, created["key"]) == 200
    call(replicas[1], "DELETE", f"/admin/v1/me/api-keys/{created['id']}", None, admin)
    # The replica that revoked it refuses it at once; the others within the key cache's bound
    # (polled for far longer, so a busy machine does not fail the test).
    assert chat(replicas[1], created["key"]) == 401
    deadline = time.time() + 30 * KEY_CACHE_SECS
    pending = set(replicas)
    while pending and time.time() < deadline:
        pending = {base for base in pending if chat(base, created["key"]) != 401}
        time.sleep(0.1)
    assert not pending, f"still served by {pending}"
