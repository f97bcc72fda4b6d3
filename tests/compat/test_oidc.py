"""Single sign-on against a real OpenID provider: `oidc-provider-mock` (PyPI; authlib's
authorization server: discovery, JWKS, the authorization code flow, RS256 ID tokens with the
nonce it was sent), on a port of its own. The gateway is configured for it through
TOLLGATE_OIDC_*; each test plays the browser with httpx (no redirects followed, so every hop
is checked), or drives a real one (Debian's chromium) through the dashboard, or runs the CLI's
`tollgate login --sso`.

A broken signature and a genuine token meant for another application are refused end to end
through a proxy in front of the provider that tampers with what passes, and an expired token from
a provider whose tokens expire before they are issued; a wrong issuer and `none`/HMAC
algorithms, which the provider will not produce, are refused in the ID token checks' own tests
(shared/src/identity/oidc/verify.rs), with tokens signed by test keys."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from contextlib import contextmanager

import httpx
import pytest

from conftest import BINARY, call, free_port, running_gateway

CLIENT_ID = "tollgate-dashboard"
CLIENT_SECRET = "compat-client-secret"
ADMIN = "admin@example.com"


@contextmanager
def provider(port=None, token_max_age=None):
    """The OpenID provider, on `port` (a fresh one by default); yields its issuer URL. Its ID
    tokens live `token_max_age` seconds (an hour by default)."""
    port = port or free_port()
    log = tempfile.NamedTemporaryFile(prefix="oidc-provider-", suffix=".log", delete=False)
    args = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
    if token_max_age is not None:
        args += ["--token-max-age", str(token_max_age)]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    issuer = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the OpenID provider did not start: {open(log.name).read()}")
            time.sleep(0.1)
        yield issuer
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(log.name)


def user(issuer, sub, **claims):
    """Gives the provider's user `sub` these claims (the ID token carries them)."""
    r = httpx.put(f"{issuer}/users/{sub}", json=claims)
    assert r.status_code == 204, r.text


def sso_env(issuer):
    return {"TOLLGATE_OIDC_ISSUER": issuer, "TOLLGATE_OIDC_CLIENT_ID": CLIENT_ID, "TOLLGATE_OIDC_CLIENT_SECRET": CLIENT_SECRET}


def location(response):
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:300]}"
    return response.headers["location"]


def to_provider(base, sub, **params):
    """Starts a sign-in at the gateway and signs `sub` in at the provider; answers the URL the
    provider sends the browser back to (the gateway's callback, with code and state)."""
    with httpx.Client() as browser:
        authorize = location(browser.get(f"{base}/api/auth/oidc/login", params=params))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize).query)
        assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [f"{base}/api/auth/oidc/callback"]
        assert "openid" in query["scope"][0].split() and query["nonce"][0] and query["state"][0]
        return location(browser.post(authorize, data={"sub": sub}))


def back_at_gateway(callback):
    """Follows the provider's redirect to the callback; answers where the gateway sends the
    browser on, parsed, and its query."""
    where = location(httpx.get(callback))
    parts = urllib.parse.urlsplit(where)
    return parts, dict(urllib.parse.parse_qsl(parts.query))


def sign_in(base, sub, **params):
    callback = to_provider(base, sub, **params)
    assert callback.startswith(f"{base}/api/auth/oidc/callback?")
    return back_at_gateway(callback)


def exchange(base, code, verifier=None):
    body = {"code": code} | ({"verifier": verifier} if verifier else {})
    return httpx.post(f"{base}/api/auth/oidc/exchange", json=body)


def test_first_sign_in_creates_the_account_and_gives_todays_session():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        status = httpx.get(f"{base}/api/auth/oidc/status").json()
        assert status == {"enabled": True, "displayName": "127.0.0.1", "loginUrl": "/api/auth/oidc/login", "passwordLogin": "enabled"}
        user(issuer, "ada-1", email="Ada@Example.com", email_verified=True, name="Ada Lovelace", groups=["eng"])

        parts, query = sign_in(base, "ada-1")
        assert parts.path == "/" and "sso_error" not in query, query
        session = exchange(base, query["sso_code"])
        assert session.status_code == 200, session.text
        body = session.json()
        assert body["user"]["email"] == "ada@example.com" and body["user"]["name"] == "Ada Lovelace"
        # Just in time, with the role that grants nothing until a mapping or an admin says so.
        assert body["user"]["role"] == "none"
        me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
        # Today's session: the refresh token rotates as a password login's does.
        refreshed = httpx.post(f"{base}/api/auth/refresh", json={"refreshToken": body["refreshToken"]})
        assert refreshed.status_code == 200 and refreshed.json()["refreshToken"] != body["refreshToken"]
        # The one-time code is spent.
        again = exchange(base, query["sso_code"])
        assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_sso_code"

        # A second sign-in finds the same account.
        _, query = sign_in(base, "ada-1")
        assert exchange(base, query["sso_code"]).json()["user"]["id"] == body["user"]["id"]
        users = call(base, "GET", "/api/users", token=admin)
        assert [u["email"] for u in users if u["email"] == "ada@example.com"] == ["ada@example.com"]

        # The account's creation (at the first callback) and each sign-in (the session each
        # exchange started) are in the audit log, by the user; the one-time secrets are not.
        events = call(base, "GET", "/api/audit?action=oidc&limit=50", token=admin)["data"]
        assert all(e["actor"] == {"kind": "user", "id": body["user"]["id"]} for e in events), events
        callbacks = [e for e in events if e["action"] == "GET /api/auth/oidc/callback"]
        created = [c for e in callbacks for c in e["changes"] if c["item"] == "USER" and c["op"] == "created"]
        assert len(created) == 1 and created[0]["after"]["email"] == "ada@example.com"
        exchanges = [e for e in events if e["action"] == "POST /api/auth/oidc/exchange"]
        assert len({e["request_id"] for e in exchanges}) == 2
        assert all(c["op"] == "created" and c["item"] in ("USER", "REFRESH") for e in exchanges for c in e["changes"])
        assert not [c for e in events for c in e["changes"] if c["item"].startswith("OIDC")]


def test_a_callback_works_once_and_a_code_from_another_sign_in_is_refused():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, _):
        user(issuer, "bob-1", email="bob@example.com", email_verified=True)
        callback = to_provider(base, "bob-1")
        _, first = back_at_gateway(callback)
        assert "sso_code" in first
        # The same callback again (a replay from the history or a log) is refused.
        _, replay = back_at_gateway(callback)
        assert "sso_code" not in replay and "already completed" in replay["sso_error"]

        # A code issued for one sign-in, delivered with another sign-in's state: the ID token
        # carries the first sign-in's nonce, and the second refuses it.
        code_of_a = urllib.parse.parse_qs(urllib.parse.urlsplit(to_provider(base, "bob-1")).query)["code"][0]
        b = urllib.parse.urlsplit(to_provider(base, "bob-1"))
        state_of_b = urllib.parse.parse_qs(b.query)["state"][0]
        injected = f"{base}/api/auth/oidc/callback?" + urllib.parse.urlencode({"code": code_of_a, "state": state_of_b})
        _, query = back_at_gateway(injected)
        assert "sso_code" not in query and "nonce" in query["sso_error"], query

        # An unknown state: nothing to complete.
        _, query = back_at_gateway(f"{base}/api/auth/oidc/callback?code=x&state=made-up")
        assert "sso_code" not in query and "start again" in query["sso_error"]


def test_an_email_the_provider_has_not_verified_is_refused():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        user(issuer, "eve-1", email="eve@example.com", email_verified=False)
        _, query = sign_in(base, "eve-1")
        assert "sso_code" not in query and "not verified" in query["sso_error"], query
        user(issuer, "eve-2", email="eve2@example.com")  # no email_verified claim at all
        _, query = sign_in(base, "eve-2")
        assert "not verified" in query["sso_error"]
        assert not [u for u in call(base, "GET", "/api/users", token=admin) if u["email"].startswith("eve")]


def test_a_provider_that_rotated_its_keys_is_followed():
    port = free_port()
    with provider(port) as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, _):
        user(issuer, "kim-1", email="kim@example.com", email_verified=True)
        _, query = sign_in(base, "kim-1")
        assert "sso_code" in query, query
    # The provider restarts with a new signing key (and a new key id) on the same address;
    # the gateway's cached keys lack it, so it fetches them again.
    with provider(port) as issuer:
        user(issuer, "kim-1", email="kim@example.com", email_verified=True)
        with running_gateway(ADMIN, sso_env(issuer)) as (base, _):
            _, query = sign_in(base, "kim-1")
            assert "sso_code" in query, query


def test_a_provider_that_rotates_keys_under_a_running_gateway():
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = sso_env(f"http://127.0.0.1:{port}")
        with running_gateway(ADMIN, env, data=data) as (base, _):
            with provider(port) as issuer:
                user(issuer, "lee-1", email="lee@example.com", email_verified=True)
                _, query = sign_in(base, "lee-1")
                assert "sso_code" in query, query
            time.sleep(1.2)  # past the gateway's pause between two fetches of the keys
            with provider(port) as issuer:
                user(issuer, "lee-1", email="lee@example.com", email_verified=True)
                _, query = sign_in(base, "lee-1")
                assert "sso_code" in query, query


def test_password_sign_in_can_be_left_to_a_break_glass_admin():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        call(base, "POST", "/api/users", {"email": "pat@example.com", "password": "pat password 123", "role": "viewer"}, token=admin)
        auth = {"Authorization": f"Bearer {admin}"}
        # Without naming the break-glass admin, it cannot be switched off.
        r = httpx.put(f"{base}/api/settings/oidc", json={"passwordLogin": "break_glass_only"}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["param"] == "breakGlassEmail"
        r = httpx.put(f"{base}/api/settings/oidc", json={"passwordLogin": "break_glass_only", "breakGlassEmail": "pat@example.com"}, headers=auth)
        assert r.status_code == 400 and "admin" in r.json()["error"]["message"]
        r = httpx.put(f"{base}/api/settings/oidc", json={"passwordLogin": "break_glass_only", "breakGlassEmail": ADMIN, "displayName": "Mock IdP"}, headers=auth)
        assert r.status_code == 200, r.text
        view = r.json()
        assert view["source"] == "environment" and view["redirectUri"] == f"{base}/api/auth/oidc/callback" and "clientSecret" not in json.dumps(view)

        refused = httpx.post(f"{base}/api/auth/login", json={"email": "pat@example.com", "password": "pat password 123"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "password_login_disabled"
        assert httpx.post(f"{base}/api/auth/login", json={"email": ADMIN, "password": "compat test password"}).status_code == 200
        assert httpx.get(f"{base}/api/auth/oidc/status").json()["passwordLogin"] == "break_glass_only"
        assert httpx.get(f"{base}/api/auth/oidc/status").json()["displayName"] == "Mock IdP"

        # Only global admins see or change it.
        user(issuer, "pat-1", email="pat@example.com", email_verified=True)
        _, query = sign_in(base, "pat-1")
        pat = exchange(base, query["sso_code"]).json()
        assert pat["user"]["role"] == "viewer"
        r = httpx.get(f"{base}/api/settings/oidc", headers={"Authorization": f"Bearer {pat['token']}"})
        assert r.status_code == 403


def test_settings_saved_through_the_api_configure_sign_in():
    with provider() as issuer, running_gateway(ADMIN) as (base, admin):
        assert httpx.get(f"{base}/api/auth/oidc/status").json()["enabled"] is False
        r = httpx.get(f"{base}/api/auth/oidc/login")
        assert r.status_code == 404 and r.json()["error"]["code"] == "sso_not_configured"
        auth = {"Authorization": f"Bearer {admin}"}
        bad = httpx.put(f"{base}/api/settings/oidc", json={"issuer": "http://idp.example.com"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "issuer"
        r = httpx.put(f"{base}/api/settings/oidc", json={"issuer": issuer, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}, headers=auth)
        assert r.status_code == 200 and r.json()["hasClientSecret"] is True and r.json()["source"] == "settings"
        assert CLIENT_SECRET not in r.text
        user(issuer, "sam-1", email="sam@example.com", email_verified=True)
        _, query = sign_in(base, "sam-1")
        assert exchange(base, query["sso_code"]).json()["user"]["email"] == "sam@example.com"


def test_return_to_stays_on_the_gateway_or_the_loopback():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, _):
        for bad in ["https://evil.example.com/", "//evil.example.com/", "http://10.0.0.1:8080/cb"]:
            r = httpx.get(f"{base}/api/auth/oidc/login", params={"return_to": bad})
            assert r.status_code == 400 and r.json()["error"]["param"] == "return_to", bad
        r = httpx.get(f"{base}/api/auth/oidc/login", params={"return_to": "http://127.0.0.1:5555/callback"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "challenge"
        # With the CLI's challenge, the code is redeemed only with its verifier.
        verifier = "v" * 43
        import base64
        import hashlib

        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        user(issuer, "cli-1", email="cli@example.com", email_verified=True)
        parts, query = sign_in(base, "cli-1", return_to="http://127.0.0.1:5555/callback", challenge=challenge)
        assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:5555", "/callback")
        assert exchange(base, query["sso_code"]).status_code == 400  # no verifier
        parts, query = sign_in(base, "cli-1", return_to="http://127.0.0.1:5555/callback", challenge=challenge)
        assert exchange(base, query["sso_code"], verifier="w" * 43).status_code == 401
        parts, query = sign_in(base, "cli-1", return_to="http://127.0.0.1:5555/callback", challenge=challenge)
        assert exchange(base, query["sso_code"], verifier=verifier).status_code == 200


def test_the_cli_signs_in_through_the_browser_and_a_loopback_redirect():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, _), tempfile.TemporaryDirectory() as config:
        user(issuer, "cli-2", email="cli2@example.com", email_verified=True)
        env = {**os.environ, "XDG_CONFIG_HOME": config, "TOLLGATE_SERVER": base}
        cli = subprocess.Popen([BINARY, "login", "--sso", "--no-browser"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = None
            for line in cli.stderr:
                m = re.search(r"(http://\S+/api/auth/oidc/login\?\S+)", line)
                if m:
                    url = m.group(1)
                    break
            assert url, "the CLI printed no sign-in URL"
            # The browser: to the provider, back to the gateway, on to the CLI's listener.
            with httpx.Client() as browser:
                authorize = location(browser.get(url))
                callback = location(browser.post(authorize, data={"sub": "cli-2"}))
                loopback = location(browser.get(callback))
                assert loopback.startswith("http://127.0.0.1:") and "sso_code=" in loopback
                page = browser.get(loopback)
                assert page.status_code == 200 and "Signed in" in page.text
            out, _ = cli.communicate(timeout=30)
        finally:
            cli.kill()
        assert cli.returncode == 0 and "as cli2@example.com" in out
        saved = json.load(open(os.path.join(config, "tollgate", "session.json")))
        assert saved[base]["email"] == "cli2@example.com"
        # The session file works as today: a command that needs the session runs.
        keys = subprocess.run([BINARY, "keys", "list", "--json"], env=env, capture_output=True, text=True, timeout=30)
        assert keys.returncode == 0, keys.stderr


def test_signing_in_through_the_dashboard_in_a_real_browser():
    from test_dashboard import CHROMIUM, open_page

    if not CHROMIUM:
        pytest.fail("no chromium: install Debian's (apt-get install chromium) or set TOLLGATE_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin), sync_playwright() as p:
        # An account that exists already (an admin, so that every page answers it) is the one
        # the provider's email signs in to.
        call(base, "POST", "/api/users", {"email": "dee@example.com", "password": "dee password 123", "role": "admin"}, token=admin)
        user(issuer, "dee-1", email="dee@example.com", email_verified=True, name="Dee")
        browser, page, problems = open_page(p, 1280)
        try:
            page.goto(base + "/")
            sign_in_link = page.get_by_role("link", name="Sign in with 127.0.0.1")
            expect(sign_in_link).to_be_visible()
            assert not problems, problems
            sign_in_link.click()
            # The provider's own page: who is signing in. (Its stylesheet, from a CDN this
            # machine cannot reach, and its missing favicon are not the dashboard's errors.)
            page.get_by_placeholder("sub").fill("dee-1")
            problems.clear()
            page.get_by_role("button", name="Authorize").click()
            # Back on the dashboard, signed in, the code gone from the address bar.
            expect(page.get_by_role("navigation", name="Sections")).to_contain_text("dee@example.com")
            assert "sso_code" not in page.url
            # The provider's page may still be fetching its favicon (a 404 there) as the browser
            # leaves it; only what the dashboard logged counts.
            ours = [x for x in problems if f"({issuer}/" not in x]
            assert not ours, problems
        finally:
            browser.close()


@pytest.mark.skipif(not os.environ.get("TOLLGATE_TEST_DYNAMODB_ENDPOINT"), reason="needs moto's server: run through scripts/test")
def test_a_sign_in_begun_on_one_replica_completes_on_another_on_dynamodb(tmp_path):
    """On DynamoDB (as on Lambda, where each request may reach another instance) the sign-in's
    state and one-time code live in the table: begun on one process, it completes on another,
    and still only once."""
    import uuid

    import lambda_harness
    from lambda_harness import stop, wait_for_port

    table = f"sso-{uuid.uuid4().hex[:8]}"
    with provider() as issuer:
        user(issuer, "rep-1", email="rep@example.com", email_verified=True)
        env = {**lambda_harness.lambda_env(table, os.environ["TOLLGATE_TEST_DYNAMODB_ENDPOINT"]), **sso_env(issuer)}
        procs, bases = [], []
        try:
            for i in range(2):
                port = free_port()
                data = tmp_path / f"replica{i}"
                data.mkdir()
                # Both must send the provider the same redirect URI: the public URL is the first's.
                public = bases[0] if bases else f"http://127.0.0.1:{port}"
                args = [BINARY, "serve"] + (["--create-table"] if i == 0 else [])
                proc_env = {**env, "TOLLGATE_LISTEN": f"127.0.0.1:{port}", "TOLLGATE_DATA_DIR": str(data), "TOLLGATE_PUBLIC_URL": public}
                proc = subprocess.Popen(args, env=proc_env, stdout=open(data / "gateway.log", "wb"), stderr=subprocess.STDOUT)
                procs.append(proc)
                wait_for_port(port, proc, f"tollgate serve (replica {i})")
                bases.append(f"http://127.0.0.1:{port}")
            first, second = bases
            call(first, "POST", "/api/setup/first-admin", {"email": ADMIN, "password": "compat test password"})
            callback = to_provider(first, "rep-1")
            # The provider sends the browser to the public URL (the first); deliver it to the second.
            on_second = callback.replace(first, second, 1)
            _, query = back_at_gateway(on_second)
            assert "sso_code" in query, query
            _, replay = back_at_gateway(callback)
            assert "sso_code" not in replay, "the first process must see the state spent"
            session = exchange(first, query["sso_code"])
            assert session.status_code == 200 and session.json()["user"]["email"] == "rep@example.com"
            assert exchange(second, query["sso_code"]).status_code == 401
        finally:
            for proc in procs:
                stop(proc)


@contextmanager
def tampering(upstream, tamper):
    """A proxy in front of the provider that passes everything on (Host included, so the
    provider names the proxy as its issuer and endpoints) but lets `tamper(method, path, query,
    headers, body)` change a request, and changes the token endpoint's answer with
    `tamper.answer(json)` when it has one: a provider gone wrong, or a network that is not."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection", "accept-encoding")}
            query, headers, body = tamper(self.command, path, query, headers, body)
            r = httpx.request(self.command, f"{upstream}{path}" + (f"?{query}" if query else ""), headers=headers, content=body)
            content = r.content
            if path == "/oauth2/token" and r.status_code == 200 and hasattr(tamper, "answer"):
                content = json.dumps(tamper.answer(r.json())).encode()
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_token_with_a_broken_signature_or_for_another_app_is_refused():
    import base64

    def passthrough(method, path, query, headers, body):
        return query, headers, body

    def flip_signature(answer):
        header, payload, signature = answer["id_token"].split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[len(raw) // 2] ^= 0x01
        answer["id_token"] = ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
        return answer

    passthrough.answer = flip_signature

    # The same provider, asked on behalf of another application (another client id): its ID
    # token is genuine, signed, and meant for that application.
    def for_another_app(method, path, query, headers, body):
        query = query.replace(f"client_id={CLIENT_ID}", "client_id=another-app")
        if "Authorization" in headers or "authorization" in headers:
            name = "Authorization" if "Authorization" in headers else "authorization"
            headers[name] = "Basic " + base64.b64encode(f"another-app:{CLIENT_SECRET}".encode()).decode()
        return query, headers, body

    with provider() as upstream:
        user(upstream, "mal-1", email="mal@example.com", email_verified=True)
        for tamper, reason in [(passthrough, "signature does not verify"), (for_another_app, "not meant for this gateway")]:
            with tampering(upstream, tamper) as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
                _, query = sign_in(base, "mal-1") if tamper is passthrough else sign_in_via_tamper(base, "mal-1")
                assert "sso_code" not in query and reason in query["sso_error"], query
                assert not [u for u in call(base, "GET", "/api/users", token=admin) if u["email"] == "mal@example.com"]


def sign_in_via_tamper(base, sub):
    """`sign_in`, without the check that the provider was asked for our own client id."""
    with httpx.Client() as browser:
        authorize = location(browser.get(f"{base}/api/auth/oidc/login"))
        return back_at_gateway(location(browser.post(authorize, data={"sub": sub})))


def test_an_admin_configures_sign_in_on_the_dashboard_and_a_user_signs_in():
    from test_dashboard import CHROMIUM, open_page

    if not CHROMIUM:
        pytest.fail("no chromium: install Debian's (apt-get install chromium) or set TOLLGATE_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    with provider() as issuer, running_gateway(ADMIN) as (base, admin), sync_playwright() as p:
        call(base, "POST", "/api/users", {"email": "fay@example.com", "password": "fay password 123", "role": "admin"}, token=admin)
        user(issuer, "fay-1", email="fay@example.com", email_verified=True)
        browser, page, problems = open_page(p, 1280)
        try:
            page.goto(base + "/#/settings")
            page.get_by_label("Email").fill(ADMIN)
            page.get_by_label("Password").fill("compat test password")
            page.get_by_role("button", name="Log in").click()
            form = page.get_by_role("form", name="Single sign-on")
            expect(form).to_contain_text(f"{base}/api/auth/oidc/callback")
            form.get_by_label("Issuer URL").fill(issuer)
            form.get_by_label("Client id").fill(CLIENT_ID)
            form.get_by_label("Client secret").fill(CLIENT_SECRET)
            form.get_by_label("Button name").fill("Mock IdP")
            form.get_by_role("button", name="Save single sign-on").click()
            expect(form.get_by_label("Client secret")).to_have_attribute("placeholder", "saved; type to replace")
            saved = call(base, "GET", "/api/settings/oidc", token=admin)
            assert (saved["issuer"], saved["clientId"], saved["hasClientSecret"], saved["displayName"]) == (issuer, CLIENT_ID, True, "Mock IdP")
            assert not problems, problems

            page.get_by_role("button", name="Log out").click()
            page.get_by_role("link", name="Sign in with Mock IdP").click()
            page.get_by_placeholder("sub").fill("fay-1")
            problems.clear()
            page.get_by_role("button", name="Authorize").click()
            expect(page.get_by_role("navigation", name="Sections")).to_contain_text("fay@example.com")
            assert not problems, problems
        finally:
            browser.close()


def test_the_groups_claim_drives_role_and_workspaces_at_every_sign_in():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        ws = call(base, "POST", "/api/workspaces", {"name": "Platform"}, token=admin)["id"]
        mapping = {"defaultRole": "viewer", "rules": [{"group": "platform", "role": "operator", "workspaces": [{"workspaceId": ws, "role": "admin"}]}]}
        call(base, "PUT", "/api/settings/group-mapping", mapping, token=admin)

        def signed_in(groups):
            claims = {"email": "gus@example.com", "email_verified": True} | ({"groups": groups} if groups is not None else {})
            user(issuer, "gus-1", **claims)
            _, query = sign_in(base, "gus-1")
            session = exchange(base, query["sso_code"]).json()
            mine = httpx.get(f"{base}/api/workspaces", headers={"Authorization": f"Bearer {session['token']}"}).json()["workspaces"]
            return session["user"]["role"], {(w["id"], w["role"]) for w in mine}

        # Created just in time with the mapping's role and membership.
        assert signed_in(["platform", "other"]) == ("operator", {(ws, "admin")})
        # The provider took the group away: the next sign-in takes the role and membership away.
        assert signed_in(["other"]) == ("viewer", set())
        assert signed_in(["platform"]) == ("operator", {(ws, "admin")})
        # No groups claim at all: the groups kept on the account (SCIM's, or the last sign-in's) decide.
        assert signed_in(None) == ("operator", {(ws, "admin")})
        events = call(base, "GET", "/api/audit?action=oidc%2Fcallback&limit=100", token=admin)["data"]
        # Each change the mapping made is an audit event of the sign-in: the role (USER) and the
        # membership (WS, the workspace's member item).
        items = [c["item"] for e in events for c in e["changes"]]
        assert items.count("WS") >= 3 and "USER" in items, items


def test_an_account_deprovisioned_by_scim_cannot_sign_in():
    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        scim = call(base, "POST", "/api/scim/tokens", {"name": "idp"}, token=admin)["token"]
        headers = {"Authorization": f"Bearer {scim}", "Content-Type": "application/scim+json"}
        created = httpx.post(
            f"{base}/scim/v2/Users",
            headers=headers,
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "hal@example.com", "emails": [{"value": "hal@example.com", "primary": True}], "active": True},
        )
        assert created.status_code == 201, created.text
        user(issuer, "hal-1", email="hal@example.com", email_verified=True)
        _, query = sign_in(base, "hal-1")
        session = exchange(base, query["sso_code"]).json()
        assert session["user"]["id"] == created.json()["id"], "sign-in finds the account SCIM provisioned"
        off = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": False}}]}
        assert httpx.patch(f"{base}/scim/v2/Users/{created.json()['id']}", headers=headers, json=off).status_code == 200
        # The session ended at once, and single sign-on does not start a new one.
        assert httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {session['token']}"}).status_code == 401
        _, query = sign_in(base, "hal-1")
        assert "sso_code" not in query and "deactivated" in query["sso_error"], query


def test_an_expired_id_token_is_refused():
    # The provider's tokens expire five minutes before they are issued (past the gateway's
    # minute of leeway for clocks): what a provider with a slow clock, or a replayed old token,
    # looks like.
    with provider(token_max_age=-300) as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, admin):
        user(issuer, "old-1", email="old@example.com", email_verified=True)
        _, query = sign_in(base, "old-1")
        assert "sso_code" not in query and "expired" in query["sso_error"], query
        assert not [u for u in call(base, "GET", "/api/users", token=admin) if u["email"] == "old@example.com"]


def test_of_concurrent_callbacks_with_one_state_exactly_one_signs_in():
    from concurrent.futures import ThreadPoolExecutor

    with provider() as issuer, running_gateway(ADMIN, sso_env(issuer)) as (base, _):
        user(issuer, "ray-1", email="ray@example.com", email_verified=True)
        callback = to_provider(base, "ray-1")
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: back_at_gateway(callback)[1], range(8)))
        codes = [o["sso_code"] for o in outcomes if "sso_code" in o]
        assert len(codes) == 1, outcomes
        # And of concurrent exchanges of that code, exactly one gets a session.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: exchange(base, codes[0]).status_code, range(8)))
        assert sorted(statuses) == [200] + [401] * 7, statuses
