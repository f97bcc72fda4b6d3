"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright): the
main journey from first-admin setup to a revoked key, failing on any console error, with a
screenshot of each page under target/screenshots/."""

import json
import os
import shutil
import time

import openai
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, call, running_gateway

CHROMIUM = os.environ.get("TOLLGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "target" / "screenshots"


def open_page(p, width):
    """Headless chromium with a page whose console errors and page errors are collected."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems = []
    watch(page, problems)
    return browser, page, problems


def watch(page, problems, who=""):
    """Collects a page's console errors (with the URL each is about) and page errors into
    `problems`, each prefixed with `who`."""
    page.on("console", lambda m: problems.append(f"{who}console {m.type}: {m.text} ({m.location.get('url')})") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"{who}page error: {e}"))


def test_the_main_journey_in_a_real_browser():
    assert CHROMIUM, "no chromium: install Debian's (apt-get install chromium) or set TOLLGATE_CHROMIUM"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_gateway(None) as (base, _), sync_playwright() as p:
        browser, page, problems = open_page(p, width=1280)
        shot = lambda name: page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

        def go(section):
            """Opens a section from the navigation and waits for its page."""
            page.get_by_role("link", name=section, exact=True).click()
            expect(page.get_by_role("heading", name=section, level=1)).to_be_visible()

        page.goto(base + "/")
        expect(page.get_by_role("heading", name="Welcome to Tollgate")).to_be_visible()
        shot("setup")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill("dashboard password 1")
        page.get_by_role("button", name="Create the admin").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        shot("overview-empty")

        go("Models")
        page.get_by_label("Model id").fill("mock-a")
        page.get_by_role("button", name="Add model").click()
        expect(page.get_by_role("cell", name="mock-a", exact=True)).to_be_visible()
        # The API's error is shown, not swallowed: the same id again is a conflict.
        page.get_by_label("Model id").fill("mock-a")
        page.get_by_role("button", name="Add model").click()
        expect(page.get_by_role("alert")).to_contain_text("already")
        # The browser logs that refused request as a console error: the one expected.
        assert sum("status of 409" in x for x in problems) == 1, problems
        problems[:] = [x for x in problems if "status of 409" not in x]
        shot("models")

        go("API keys")
        page.get_by_label("Name").fill("browser")
        page.get_by_label("Budget (cents)").fill("500")
        page.get_by_role("button", name="Create key").click()
        secret = page.get_by_test_id("secret").inner_text()
        assert secret.startswith("tg"), secret
        shot("keys-secret")
        page.get_by_role("button", name="Done").click()
        expect(page.get_by_test_id("secret")).to_have_count(0)

        client = openai.OpenAI(base_url=base + "/v1", api_key=secret)
        for words in (3, 5, 8):
            answer = client.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": f"hi [mock:words={words}]"}])
            assert len(answer.choices[0].message.content.split()) == words

        go("Usage")
        # The rollups follow the records within about a second.
        deadline = time.time() + 15
        while True:
            page.wait_for_load_state("networkidle")
            if page.get_by_role("cell", name="mock-a", exact=True).count() >= 1 and page.get_by_role("button", name="Trace of request").count() == 3:
                break
            assert time.time() < deadline, (problems, page.content())
            time.sleep(0.5)
            page.reload()
        expect(page.locator(".chart canvas").first).to_be_visible()
        shot("usage")
        page.get_by_role("button", name="Trace of request").first.click()
        dialog = page.get_by_role("dialog", name="Routing trace")
        expect(dialog).to_contain_text("mock-a")
        expect(dialog).to_contain_text("200")
        shot("usage-trace")

        go("Overview")
        expect(page.get_by_text("Requests today")).to_be_visible()
        shot("overview")

        # The team pages: a workspace with an invite and a token, a project with a limit and a
        # token, your own providers, settings with a user added.
        go("Workspaces")
        page.get_by_label("Workspace name").fill("Acme")
        page.get_by_role("button", name="Create workspace").click()
        page.get_by_role("button", name="Open Acme").click()
        page.get_by_label("Email to invite").fill("new@example.com")
        page.get_by_role("button", name="Invite").click()
        expect(page.get_by_role("status")).to_contain_text("Send them this link")
        page.get_by_label("Token name").fill("server")
        page.get_by_role("button", name="Create token").click()
        expect(page.get_by_test_id("secret")).to_contain_text("tg")
        expect(page.get_by_role("cell", name="new@example.com", exact=True)).to_be_visible()
        shot("workspaces")
        # The invitee opens the link in a browser of their own, chooses a password and is in.
        link = page.get_by_role("status").filter(has_text="Send them this link").inner_text().split("Send them this link: ")[1].strip()
        invitee = browser.new_context().new_page()
        watch(invitee, problems, "invitee ")
        invitee.goto(link)
        expect(invitee.get_by_role("heading", name="Join a workspace")).to_be_visible()
        invitee.get_by_label("New password").fill("invitee password 1")
        invitee.get_by_role("button", name="Join the workspace").click()
        expect(invitee.get_by_role("heading", name="Workspaces", level=1)).to_be_visible()
        expect(invitee.get_by_role("cell", name="member", exact=True)).to_be_visible()
        invitee.screenshot(path=str(SHOTS / "invite-accepted.png"), full_page=True)
        invitee.close()

        go("Projects")
        page.get_by_label("Project name").fill("App")
        page.get_by_label("Slug").fill("app")
        page.get_by_label("Models (comma-separated)").fill("mock-a")
        page.get_by_role("button", name="Create project").click()
        page.get_by_role("button", name="Open app").click()
        page.get_by_role("button", name="Add a limit").click()
        page.get_by_label("Limit 1 (dollars)").fill("25")
        page.get_by_label("Window 1").select_option("rolling:1:day")
        page.get_by_role("button", name="Save project").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        page.reload()
        page.get_by_role("button", name="Open app").click()
        expect(page.get_by_label("Limit 1 (dollars)")).to_have_value("25")
        expect(page.get_by_label("Window 1")).to_have_value("rolling:1:day")
        page.get_by_label("Token name").fill("ci")
        page.get_by_role("button", name="Create token").click()
        expect(page.get_by_test_id("secret")).to_contain_text("tg")
        shot("projects")

        go("Providers")
        expect(page.get_by_role("heading", name="Providers")).to_be_visible()
        # The choice comes from the server's API document: every type a user may own, not mock.
        for kind in ["openai", "openai-compatible", "bedrock", "gemini", "vertex"]:
            expect(page.get_by_label("Type").locator(f'option[value="{kind}"]')).to_have_count(1)
        expect(page.get_by_label("Type").locator('option[value="mock"]')).to_have_count(0)
        shot("providers")

        go("Operations")
        expect(page.get_by_role("heading", name="Operations")).to_be_visible()
        # Read from /metrics: counts since start at once, rates after the second reading.
        expect(page.get_by_role("cell", name="Requests since start")).to_be_visible()
        expect(page.get_by_role("row", name="Requests per second")).not_to_contain_text("measuring", timeout=15000)
        expect(page.get_by_role("row", name="Added latency p99")).to_be_visible()

        go("Audit")
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        # The changes made above, newest first, with who and what.
        expect(page.get_by_role("cell", name="POST /api/models", exact=True).first).to_be_visible()
        page.get_by_label("Action").fill("DELETE")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_role("cell", name="POST /api/models", exact=True)).to_have_count(0)

        go("Settings")
        page.get_by_label("Role name").fill("auditor")
        page.get_by_label("report:read").check()
        page.get_by_role("button", name="Create role").click()
        expect(page.get_by_role("cell", name="auditor", exact=True)).to_be_visible()
        # Built-in roles cannot be deleted; the new one can.
        expect(page.get_by_role("button", name="Delete role admin")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete role auditor")).to_be_visible()
        page.get_by_label("Mail channel name").fill("ops-mail")
        page.get_by_label("SMTP host").fill("127.0.0.1")
        page.get_by_label("From address").fill("gate@example.com")
        page.get_by_label("To (comma-separated)").fill("ops@example.com")
        page.get_by_role("button", name="Add mail channel").click()
        expect(page.get_by_role("cell", name="ops-mail", exact=True)).to_be_visible()
        page.get_by_label("User email").fill("viewer@example.com")
        page.get_by_label("Initial password").fill("viewer password 1")
        page.get_by_role("button", name="Add user").click()
        expect(page.get_by_role("cell", name="viewer@example.com", exact=True)).to_be_visible()
        shot("settings")

        go("API keys")
        # Rotation with a grace period shows the new secret once.
        page.get_by_label("Name").fill("spare")
        page.get_by_role("button", name="Create key").click()
        first = page.get_by_test_id("secret").inner_text()
        page.get_by_role("button", name="Done").click()
        page.get_by_label("Rotation grace (seconds the old secret keeps working)").fill("60")
        page.get_by_role("button", name="Rotate spare").first.click()
        expect(page.get_by_test_id("secret")).not_to_have_text(first)
        page.get_by_role("button", name="Done").click()
        page.get_by_role("button", name="Revoke browser").click()
        # Revoked keys leave the listing.
        expect(page.get_by_role("cell", name="browser", exact=True)).to_have_count(0)
        shot("keys-revoked")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="mock-a", messages=[{"role": "user", "content": "hi"}])

        # The seed's refresh rule: an access token the server no longer takes (here, a forged
        # one) is refreshed on the first 401 (once, however many calls the page makes at once),
        # and the rotated refresh token kept.
        read = "JSON.parse(localStorage.getItem('tollgate.session'))"
        before = page.evaluate(f"{read}.refreshToken")
        page.evaluate(f"(() => {{ const s = {read}; s.token = 'not.a.token'; localStorage.setItem('tollgate.session', JSON.stringify(s)); }})()")
        go("Overview")
        page.reload()
        expect(page.get_by_text("Requests today")).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.evaluate(f"{read}.refreshToken") != before
        assert page.evaluate(f"{read}.token") != "not.a.token"
        # Each call that met the 401 is logged by the browser: those are expected.
        assert any("status of 401" in x for x in problems), problems
        problems[:] = [x for x in problems if "status of 401" not in x]

        # By keyboard alone: log out, then log in with typing, Tab and Enter.
        page.get_by_role("button", name="Log out").click()
        page.get_by_label("Email").focus()
        page.keyboard.type("admin@example.com")
        page.keyboard.press("Tab")
        page.keyboard.type("dashboard password 1")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()

        browser.close()
        assert problems == [], problems


def test_a_models_routing_is_edited_in_a_real_browser():
    """Deployments (with a key that is never shown again), strategy, fallbacks and retry set
    through the "Edit routing" form, read back from the API; a bad weight shows the API's
    message; a deployment removed leaves the other's key in place. The deployments' URLs are
    never called."""
    assert CHROMIUM, "no chromium: install Debian's (apt-get install chromium) or set TOLLGATE_CHROMIUM"
    SHOTS.mkdir(parents=True, exist_ok=True)
    secret = "sk-east-browser-secret"
    with running_gateway("admin@example.com") as (base, token), sync_playwright() as p:
        for model in ("relay", "big"):
            body = {"id": model, "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1", "inputPrice": 1, "outputPrice": 2, "contextWindow": 8000}
            call(base, "POST", "/api/models", body, token)
        browser, page, problems = open_page(p, width=1440)

        page.goto(base + "/#/models")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill("compat test password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()

        page.get_by_role("button", name="Edit routing of relay").click()
        form = page.get_by_role("form", name="Routing of relay")
        # The deployments' inputs are named by aria-label (exactly); the other fields by a label
        # that wraps them (whose name includes the field's value).
        label = lambda text: form.get_by_label(text, exact=text.startswith("Deployment "))
        for i, (name, region, weight) in enumerate([("east", "eastus", "3"), ("west", "westus", "1")], 1):
            form.get_by_role("button", name="Add a deployment").click()
            label(f"Deployment {i} id").fill(name)
            label(f"Deployment {i} provider").select_option("openai-compatible")
            label(f"Deployment {i} base URL").fill(f"http://127.0.0.1:9/{name}/v1")
            label(f"Deployment {i} region").fill(region)
            label(f"Deployment {i} weight").fill(weight)
        label("Deployment 1 API key").fill(secret)
        label("Deployment 1 rpm").fill("100")
        label("Deployment 2 tpm").fill("50000")
        label("Routing strategy").select_option("least_latency")
        label("Fallbacks (comma-separated model ids)").fill("big")
        label("Context-window fallback").fill("big")
        label("Retry max attempts").fill("3")
        label("Retry max total ms").fill("20000")
        form.get_by_role("button", name="Save routing").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the routing of relay")
        expect(form).to_have_count(0)
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="relay", exact=True))
        expect(row).to_contain_text("east (openai-compatible, eastus, w3)")
        expect(row).to_contain_text("west (openai-compatible, westus, w1)")
        expect(row).to_contain_text("big; context window: big")
        page.screenshot(path=str(SHOTS / "models-routing.png"), full_page=True)

        model = call(base, "GET", "/api/models/relay", token=token)
        assert model["deployments"] == [
            {"id": "east", "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/east/v1", "region": "eastus", "weight": 3, "rpm": 100, "tpm": None, "hasApiKey": True},
            {"id": "west", "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/west/v1", "region": "westus", "weight": 1, "rpm": None, "tpm": 50000, "hasApiKey": False},
        ], model
        assert (model["routingStrategy"], model["fallbacks"], model["contextWindowFallback"]) == ("least_latency", ["big"], "big"), model
        assert model["retry"] == {"maxAttempts": 3, "maxTotalMs": 20000}, model
        assert secret not in page.content() and secret not in json.dumps(model)

        # Opened again, the form holds what was saved (the key as set, not shown); a weight of 0
        # is refused with the API's message and the field it names.
        page.get_by_role("button", name="Edit routing of relay").click()
        expect(label("Deployment 2 id")).to_have_value("west")
        expect(label("Deployment 1 API key")).to_have_value("")
        expect(label("Deployment 1 API key")).to_have_attribute("placeholder", "set (blank: keep)")
        expect(label("Routing strategy")).to_have_value("least_latency")
        label("Deployment 2 weight").fill("0")
        form.get_by_role("button", name="Save routing").click()
        expect(form.get_by_role("alert")).to_contain_text("weight must be from 1 to 1000000 (deployments[1].weight)")
        page.screenshot(path=str(SHOTS / "models-routing-error.png"), full_page=True)
        assert call(base, "GET", "/api/models/relay", token=token)["deployments"][1]["weight"] == 1, "nothing was saved"
        # The browser logs the refused request as a console error: the one expected.
        assert sum("status of 400" in x for x in problems) == 1, problems
        problems[:] = [x for x in problems if "status of 400" not in x]

        # The second deployment removed: the first keeps its key.
        form.get_by_role("button", name="Remove deployment 2").click()
        form.get_by_role("button", name="Save routing").click()
        expect(form).to_have_count(0)
        expect(row).not_to_contain_text("west")
        model = call(base, "GET", "/api/models/relay", token=token)
        assert [(d["id"], d["hasApiKey"]) for d in model["deployments"]] == [("east", True)], model
        assert model["fallbacks"] == ["big"], "fields not changed are not sent"
        assert secret not in page.content()

        browser.close()
        assert problems == [], problems


def test_caches_and_a_models_upstream_api_are_set_in_a_real_browser():
    """The response cache set through the forms, read back from the API: a key's (a TTL out of
    range shows the API's message in place; a blank field is no cache), a project's (created,
    changed, turned off) and a project token's. A model's upstream API set to responses through
    the routing form (its choices those of the API document; the only field sent), refused in
    place for a provider that is not OpenAI's, and set back to chat."""
    assert CHROMIUM, "no chromium: install Debian's (apt-get install chromium) or set TOLLGATE_CHROMIUM"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_gateway("admin@example.com") as (base, token), sync_playwright() as p:
        call(base, "POST", "/api/models", {"id": "mock-a", "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 8000}, token)
        pro = {"id": "pro", "provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1", "inputPrice": 1, "outputPrice": 2, "contextWindow": 8000}
        call(base, "POST", "/api/models", pro, token)
        browser, page, problems = open_page(p, width=1440)
        # The bodies of the PUTs the forms send.
        sent = []
        page.on("request", lambda r: sent.append((r.url.split(base, 1)[1], r.post_data_json)) if r.method == "PUT" else None)
        row = lambda name: page.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))

        page.goto(base + "/#/keys")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill("compat test password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()

        # Keys: a TTL past 30 days is refused with the API's message; then 300 s, and none.
        page.get_by_label("Name").fill("cached")
        page.get_by_label("Cache answers for (seconds)").fill("2592001")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_role("alert")).to_contain_text("cache.ttl must be from 1 to 2592000 seconds")
        page.get_by_label("Cache answers for (seconds)").fill("300")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_test_id("secret")).to_contain_text("tg")
        page.get_by_role("button", name="Done").click()
        expect(page.get_by_role("alert")).to_have_count(0)
        expect(row("cached")).to_contain_text("cache 300 s")
        page.get_by_label("Name").fill("plain")
        page.get_by_role("button", name="Create key").click()
        page.get_by_role("button", name="Done").click()
        expect(row("plain")).not_to_contain_text("cache ")
        page.screenshot(path=str(SHOTS / "keys-cache.png"), full_page=True)
        keys = {k["name"]: k for k in call(base, "GET", "/admin/v1/me/api-keys?limit=100", token=token)["data"]}
        assert keys["cached"]["cache"] == {"ttl": 300, "mode": "exact"}, keys["cached"]
        assert "cache" not in keys["plain"], keys["plain"]

        # Projects: created with a cache, changed, then turned off by a blank field.
        page.get_by_role("link", name="Projects", exact=True).click()
        create = page.get_by_role("form", name="Create a project")
        create.get_by_label("Project name").fill("Cached")
        create.get_by_label("Slug").fill("cached")
        create.get_by_label("Models (comma-separated)").fill("mock-a")
        create.get_by_label("Cache answers for (seconds)").fill("600")
        create.get_by_role("button", name="Create project").click()
        expect(row("cached")).to_contain_text("cache 600 s")
        assert call(base, "GET", "/api/projects/cached", token=token)["cache"] == {"ttl": 600, "mode": "exact"}
        page.get_by_role("button", name="Open cached").click()
        settings = page.get_by_role("form", name="Settings of cached")
        ttl = settings.get_by_label("Cache answers for (seconds, blank: off)")
        expect(ttl).to_have_value("600")
        ttl.fill("900")
        settings.get_by_role("button", name="Save project").click()
        expect(settings.get_by_role("status")).to_contain_text("Saved")
        expect(row("cached")).to_contain_text("cache 900 s")
        assert call(base, "GET", "/api/projects/cached", token=token)["cache"] == {"ttl": 900, "mode": "exact"}
        # A project token with a cache of its own.
        tokens = page.get_by_role("form", name="Create a project token")
        tokens.get_by_label("Token name").fill("ci")
        tokens.get_by_label("Cache this token's answers for (seconds, blank: the project's)").fill("60")
        tokens.get_by_role("button", name="Create token").click()
        expect(page.get_by_test_id("secret")).to_contain_text("tg")
        expect(row("ci")).to_contain_text("cache 60 s")
        [ci] = call(base, "GET", "/api/projects/cached/tokens", token=token)
        assert ci["cache"] == {"ttl": 60, "mode": "exact"}, ci
        page.screenshot(path=str(SHOTS / "projects-cache.png"), full_page=True)
        ttl.fill("")
        settings.get_by_role("button", name="Save project").click()
        expect(row("cached")).not_to_contain_text("cache 900 s")
        expect(row("cached")).to_contain_text("none")
        assert "cache" not in call(base, "GET", "/api/projects/cached", token=token)
        path, body = sent[-1]
        assert path == "/api/projects/cached" and body["cacheOff"] is True and "cache" not in body, sent

        # Models: the upstream API's choices are the API document's; responses is the only field sent.
        page.get_by_role("link", name="Models", exact=True).click()
        page.get_by_role("button", name="Edit routing of pro").click()
        form = page.get_by_role("form", name="Routing of pro")
        select = form.get_by_label("Upstream API")
        expect(select).to_have_value("chat")
        choices = call(base, "GET", "/openapi.json")["components"]["schemas"]["UpstreamApi"]["enum"]
        assert sorted(choices) == ["chat", "responses"], choices
        expect(select.locator("option")).to_have_text(choices)
        select.select_option("responses")
        sent.clear()
        form.get_by_role("button", name="Save routing").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the routing of pro")
        expect(row("pro")).to_contain_text("responses API")
        expect(row("mock-a")).not_to_contain_text("responses API")
        assert sent == [("/api/models/pro", {"upstreamApi": "responses"})], sent
        assert call(base, "GET", "/api/models/pro", token=token)["upstreamApi"] == "responses"
        page.screenshot(path=str(SHOTS / "models-upstream-api.png"), full_page=True)
        # Opened again it holds responses; a save that changes nothing sends nothing.
        page.get_by_role("button", name="Edit routing of pro").click()
        expect(form.get_by_label("Upstream API")).to_have_value("responses")
        sent.clear()
        form.get_by_role("button", name="Save routing").click()
        expect(form).to_have_count(0)
        assert sent == [], sent

        # The mock provider cannot be served on the Responses API: the API's message, in place.
        page.get_by_role("button", name="Edit routing of mock-a").click()
        form = page.get_by_role("form", name="Routing of mock-a")
        form.get_by_label("Upstream API").select_option("responses")
        form.get_by_role("button", name="Save routing").click()
        expect(form.get_by_role("alert")).to_contain_text("every deployment must be openai or openai-compatible, not mock (upstreamApi)")
        assert "upstreamApi" not in call(base, "GET", "/api/models/mock-a", token=token)
        form.get_by_role("button", name="Cancel").click()

        # And back to chat: absent from the model again.
        page.get_by_role("button", name="Edit routing of pro").click()
        form = page.get_by_role("form", name="Routing of pro")
        form.get_by_label("Upstream API").select_option("chat")
        form.get_by_role("button", name="Save routing").click()
        expect(form).to_have_count(0)
        expect(row("pro")).not_to_contain_text("responses API")
        assert "upstreamApi" not in call(base, "GET", "/api/models/pro", token=token)

        browser.close()
        # The two refused requests (the key's TTL, mock-a's upstream API) are logged by the browser.
        assert sum("status of 400" in x for x in problems) == 2, problems
        problems[:] = [x for x in problems if "status of 400" not in x]
        assert problems == [], problems
