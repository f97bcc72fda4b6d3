"""The official Anthropic Python SDK against the local `tollgate` server's /v1/messages:
plain, streamed and tool-using messages, count_tokens, and a revoked key, a missing scope and
an exceeded budget surfacing as the SDK's own errors. The built-in mock answers behind the
door, so no network is needed. Run by scripts/test after `cargo test`."""

import anthropic
import pytest

from conftest import call, running_gateway


@pytest.fixture(scope="module")
def gateway():
    with running_gateway("anthropic-sdk@example.com") as (base, admin):
        # Output at $2000 per million tokens: 5 tokens cost exactly one cent.
        call(base, "POST", "/api/models", {"id": "mock-claude", "provider": "mock", "inputPrice": 0, "outputPrice": 2000, "contextWindow": 4096}, admin)
        yield base, admin


def new_key(gateway, **settings):
    base, admin = gateway
    created = call(base, "POST", "/admin/v1/me/api-keys", {"name": "anthropic-sdk", **settings}, admin)
    return created["id"], created["key"]


def client(gateway, key):
    return anthropic.Anthropic(base_url=gateway[0], api_key=key, max_retries=0)


def test_message(gateway):
    _, key = new_key(gateway)
    message = client(gateway, key).messages.create(
        model="mock-claude", max_tokens=50, system="Be brief.", messages=[{"role": "user", "content": "hello [mock:words=4]"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert len(message.content[0].text.split()) == 4
    assert message.usage.output_tokens == 4


def test_stream(gateway):
    _, key = new_key(gateway)
    with client(gateway, key).messages.stream(
        model="mock-claude", max_tokens=50, messages=[{"role": "user", "content": "hello [mock:words=6]"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 6
    assert final.content[0].text == text
    assert final.usage.output_tokens == 6
    assert final.stop_reason == "end_turn"


def test_max_tokens_stops_the_answer(gateway):
    _, key = new_key(gateway)
    message = client(gateway, key).messages.create(model="mock-claude", max_tokens=3, messages=[{"role": "user", "content": "hello [mock:words=9]"}])
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


TOOLS = [{"name": "weather", "description": "The weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_tool_use(gateway):
    _, key = new_key(gateway)
    sdk = client(gateway, key)
    asked = [{"role": "user", "content": "Weather in Paris? [mock:tool]"}]
    message = sdk.messages.create(model="mock-claude", max_tokens=50, tools=TOOLS, messages=asked)
    assert message.stop_reason == "tool_use"
    use = next(block for block in message.content if block.type == "tool_use")
    assert use.name == "weather" and use.input == {}
    # The tool's result goes back; the answer continues.
    answered = asked + [
        {"role": "assistant", "content": message.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}, {"type": "text", "text": "Thanks [mock:words=2]"}]},
    ]
    done = sdk.messages.create(model="mock-claude", max_tokens=50, tools=TOOLS, messages=answered)
    assert done.stop_reason == "end_turn"
    assert len(done.content[0].text.split()) == 2
    # Streamed, the tool call arrives as a tool_use block.
    with sdk.messages.stream(model="mock-claude", max_tokens=50, tools=TOOLS, messages=asked) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]


def test_count_tokens(gateway):
    _, key = new_key(gateway)
    counted = client(gateway, key).messages.count_tokens(model="mock-claude", messages=[{"role": "user", "content": "hello"}])
    # An upper bound: "user" and "hello" (9 bytes of text) plus 7 tokens of framing.
    assert counted.input_tokens == 16


def test_revoked_key_is_an_authentication_error(gateway):
    base, admin = gateway
    key_id, key = new_key(gateway)
    call(base, "DELETE", f"/admin/v1/me/api-keys/{key_id}", token=admin)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(gateway, key).messages.create(model="mock-claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "authentication_error"


def test_missing_scope_is_a_permission_error(gateway):
    _, key = new_key(gateway, scopes=["models"])
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        client(gateway, key).messages.create(model="mock-claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "chat" in refused.value.body["error"]["message"]


def test_exceeded_budget_is_a_billing_error(gateway):
    _, key = new_key(gateway, budget_limit_cents=1)
    sdk = client(gateway, key)
    # 5 output tokens cost the whole cent; the next request's worst case no longer fits.
    sdk.messages.create(model="mock-claude", max_tokens=5, messages=[{"role": "user", "content": "hi [mock:words=5]"}])
    with pytest.raises(anthropic.APIStatusError) as refused:
        sdk.messages.create(model="mock-claude", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"
    assert "budget" in refused.value.body["error"]["message"]
