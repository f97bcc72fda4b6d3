"""What an operator's tools see of a running `tollgate serve`: `/metrics` read with Prometheus's
own Python text parser after known traffic (counts, tokens, cost, refusals, latency
histograms, store round trips), behind its bearer token; the health probes; and the JSON log,
one object per line with an access line per request and no secret anywhere in it after a full
flow. Run by scripts/test after `cargo test`."""

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BINARY, call, running_gateway

METRICS_TOKEN = "metrics-scrape-token-7f3a"
PASSWORD = "compat test password"


@pytest.fixture(scope="module")
def gateway():
    log_path = os.path.join(tempfile.mkdtemp(), "gateway.log")
    env = {"TOLLGATE_METRICS_TOKEN": METRICS_TOKEN, "TOLLGATE_LOG_FORMAT": "json", "TOLLGATE_LOG": "debug"}
    with running_gateway("ops@example.com", env_extra=env, log_path=log_path) as (base, admin):
        # $1000 per million input tokens, $2000 per million output: costs in whole micro-dollars.
        call(base, "POST", "/api/models", {"id": "mock-ops", "provider": "mock", "inputPrice": 1000, "outputPrice": 2000, "contextWindow": 4096}, admin)
        yield base, admin, log_path


def scrape(base, token=METRICS_TOKEN):
    request = urllib.request.Request(base + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def value(families, name, sample=None, **labels):
    """The sum of `name`'s samples (or of `sample`'s, for a histogram's _count/_sum) whose labels
    include `labels`. The parser names a counter's family without its `_total`."""
    family = families[name] if name in families else families[name.removesuffix("_total")]
    wanted = sample or name
    return sum(s.value for s in family.samples if s.name == wanted and all(s.labels.get(k) == v for k, v in labels.items()))


def new_key(base, admin, **settings):
    return call(base, "POST", "/admin/v1/me/api-keys", {"name": "ops", **settings}, admin)


def test_metrics_count_known_traffic(gateway):
    base, admin, _ = gateway
    key = new_key(base, admin)
    sdk = openai.OpenAI(base_url=base + "/v1", api_key=key["key"], max_retries=0)
    for _ in range(3):
        sdk.chat.completions.create(model="mock-ops", max_tokens=20, messages=[{"role": "user", "content": "count [mock:words=4]"}])
    chunks = list(sdk.chat.completions.create(model="mock-ops", stream=True, messages=[{"role": "user", "content": "x [mock:words=3]"}]))
    assert chunks
    # A refusal of each kind we can make here: a model the key may not use, and a budget.
    narrow = openai.OpenAI(base_url=base + "/v1", api_key=new_key(base, admin, allowed_models=["other"])["key"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        narrow.chat.completions.create(model="mock-ops", messages=[{"role": "user", "content": "no"}])
    poor = openai.OpenAI(base_url=base + "/v1", api_key=new_key(base, admin, budget_limit_cents=1)["key"], max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(50):
            poor.chat.completions.create(model="mock-ops", max_tokens=4000, messages=[{"role": "user", "content": "spend [mock:words=4]"}])
    assert refused.value.status_code == 402

    # What the usage records say, to hold the metrics to.
    records = call(base, "GET", "/api/usage?limit=100", token=admin)["records"]
    mine = [r for r in records if r["model"] == "mock-ops"]
    served = [r for r in mine if r["outcome"] == "success"]
    assert (len(served), len(mine)) == (4, 5), mine

    m = scrape(base)
    success = value(m, "tollgate_proxy_requests_total", model="mock-ops", provider="mock", outcome="success")
    assert success == len(served), (success, len(served))
    assert value(m, "tollgate_proxy_requests_total", model="mock-ops", outcome="budget_exceeded") == 1
    assert value(m, "tollgate_proxy_tokens_total", model="mock-ops", kind="input") == sum(r["inputTokens"] for r in mine)
    assert value(m, "tollgate_proxy_tokens_total", model="mock-ops", kind="output") == sum(r["outputTokens"] for r in mine)
    cost = value(m, "tollgate_proxy_cost_microdollars_total", model="mock-ops", project="none", workspace="none")
    assert cost == sum(round(r["cost"] * 1_000_000) for r in mine) and cost > 0
    assert value(m, "tollgate_proxy_refusals_total", reason="scope", level="token") == 1
    assert value(m, "tollgate_proxy_refusals_total", reason="budget", level="token") == 1
    # Histograms: one observation per settled request, split into the gateway's and the upstream's time.
    assert value(m, "tollgate_proxy_duration_seconds", "tollgate_proxy_duration_seconds_count", model="mock-ops", part="total") == len(mine)
    assert value(m, "tollgate_proxy_duration_seconds", "tollgate_proxy_duration_seconds_count", model="mock-ops", part="gateway") == len(mine)
    assert value(m, "tollgate_proxy_ttft_seconds", "tollgate_proxy_ttft_seconds_count", model="mock-ops") == 1
    assert value(m, "tollgate_upstream_attempts_total", provider="mock", result="ok") == len(served)
    assert value(m, "tollgate_proxy_reservations_held") == 0, "every reservation was given back"
    # The route template, never the concrete path; the admin API counted as well.
    assert value(m, "tollgate_http_requests_total", route="/v1/chat/completions", method="POST", status="200") == len(served)
    assert value(m, "tollgate_http_requests_total", route="/api/models", method="POST", status="201") == 1
    assert value(m, "tollgate_store_round_trip_seconds", "tollgate_store_round_trip_seconds_count", op="transact") >= len(mine)
    for gauge in ["tollgate_outbox_backlog", "tollgate_rollup_lag_seconds"]:
        assert gauge in m and m[gauge].type == "gauge"
    # No key or user ids unless the operator opts in.
    for family in m.values():
        for sample in family.samples:
            assert "key" not in sample.labels and "user" not in sample.labels, sample


def test_metrics_ask_for_the_token(gateway):
    base, _, _ = gateway
    for token in [None, "wrong"]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(base, token)
        assert refused.value.code == 401
        assert json.loads(refused.value.read())["error"]["code"] == "unauthorized"


def test_a_session_that_may_read_settings_reads_metrics_too(gateway):
    """The dashboard's Operations page reads /metrics with the admin's session."""
    base, admin, _ = gateway
    families = scrape(base, admin)
    assert "tollgate_http_request_duration_seconds" in families


def test_health_probes_answer_without_a_session(gateway):
    base, _, _ = gateway
    assert call(base, "GET", "/health/live")["status"] == "live"
    ready = call(base, "GET", "/health/ready")
    assert ready["status"] == "ready", ready
    assert {c["name"]: c["ok"] for c in ready["checks"]} == {"store": True, "secrets": True, "background": True, "outbox": True}


def test_json_logs_carry_each_request_and_no_secret(gateway):
    base, admin, log_path = gateway
    # A full flow with every kind of secret: a password, session and refresh tokens, an API
    # key (and its rotation), a provider key, a notification channel's password.
    login = call(base, "POST", "/api/auth/login", {"email": "ops@example.com", "password": PASSWORD})
    call(base, "POST", "/api/auth/refresh", {"refreshToken": login["refreshToken"]})
    key = new_key(base, admin)
    rotated = call(base, "POST", f"/admin/v1/me/api-keys/{key['id']}/rotate", {}, admin)
    provider_key = "sk-provider-secret-0123456789abcdef"
    call(base, "POST", "/api/models/mock-ops/apikey", {"apiKey": provider_key}, admin)
    smtp_password = "smtp-password-4c1d2e"
    call(base, "PUT", "/api/settings", {"notifications": [{"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": 9, "tls": "none",
                                                       "username": "u", "password": smtp_password, "from": "a@example.com", "to": ["b@example.com"]}]}, admin)
    sdk = openai.OpenAI(base_url=base + "/v1", api_key=rotated["key"], max_retries=0)
    sdk.chat.completions.create(model="mock-ops", messages=[{"role": "user", "content": "logged"}], extra_headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base + "/v1", api_key="tg-not-a-key", max_retries=0).chat.completions.create(model="mock-ops", messages=[{"role": "user", "content": "no"}])

    with open(log_path, "rb") as f:
        text = f.read().decode()
    # Every line is one JSON object, the start-up banner included.
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any(e.get("message") == "Tollgate listening" for e in entries), entries[:3]
    access = [e for e in entries if e.get("message") == "request"]
    chat = [e for e in access if e["route"] == "/v1/chat/completions" and e["status"] == 200]
    assert chat, access[-5:]
    for field in ["request_id", "trace_id", "route", "status", "latency_ms", "outcome"]:
        assert field in chat[-1], chat[-1]
    assert chat[-1]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert any(e["status"] == 401 and e["outcome"] == "refused" for e in access)
    for secret in [PASSWORD, login["token"], login["refreshToken"], key["key"], rotated["key"], provider_key, smtp_password, METRICS_TOKEN, admin]:
        assert secret not in text, f"a secret reached the log: {secret[:6]}..."


def test_audit_verify_reads_the_store_itself():
    """`tollgate audit verify` walks the chains in the store (here once the server has let go
    of the embedded store's file)."""
    data = tempfile.mkdtemp()
    with running_gateway("audit@example.com", data=data) as (base, admin):
        call(base, "POST", "/api/models", {"id": "audited", "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 4096}, admin)
        call(base, "DELETE", "/api/models/audited", None, admin)
        events = call(base, "GET", "/api/audit", token=admin)["data"]
        assert [e["action"] for e in events[:2]] == ["DELETE /api/models/{id}", "POST /api/models"]
    verified = subprocess.run([BINARY, "audit", "verify"], env={**os.environ, "TOLLGATE_DATA_DIR": data}, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert "the audit log is intact" in verified.stdout
    assert "events" in verified.stdout, verified.stdout
