"""The official OpenAI Python SDK against the local `tollgate` server: chat (plain and
streamed), completions, embeddings, models.list and the Responses API (create plain and
streamed, retrieve, continue, input items, delete) work, and a revoked key and an exceeded
budget surface as the SDK's own errors. Run by scripts/test after `cargo test`."""

import openai
import pytest

from conftest import call, running_gateway


@pytest.fixture(scope="module")
def gateway():
    with running_gateway("sdk@example.com") as (base, admin):
        # Output at $2000 per million tokens: 5 tokens cost exactly one cent.
        call(base, "POST", "/api/models", {"id": "mock-chat", "provider": "mock", "inputPrice": 0, "outputPrice": 2000, "contextWindow": 4096}, admin)
        yield base, admin


def new_key(gateway, **settings):
    base, admin = gateway
    created = call(base, "POST", "/admin/v1/me/api-keys", {"name": "sdk", **settings}, admin)
    return created["id"], created["key"]


def client(gateway, key):
    return openai.OpenAI(base_url=gateway[0] + "/v1", api_key=key, max_retries=0)


def test_chat(gateway):
    _, key = new_key(gateway)
    answer = client(gateway, key).chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hello sdk"}], max_tokens=50)
    assert answer.choices[0].message.content.startswith("This is a deterministic reply")
    assert answer.choices[0].message.content.endswith("hello sdk")
    assert answer.usage.prompt_tokens == 2
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_chat_streaming(gateway):
    _, key = new_key(gateway)
    chunks = list(client(gateway, key).chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "x [mock:words=3]"}], stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha bravo charlie"
    assert chunks[-1].usage.completion_tokens == 3


def test_responses_create_retrieve_and_continue(gateway):
    _, key = new_key(gateway)
    sdk = client(gateway, key)
    response = sdk.responses.create(model="mock-chat", instructions="Be brief.", input="hello responses", max_output_tokens=50)
    assert response.status == "completed"
    assert response.output_text.endswith("hello responses")
    assert response.usage.input_tokens == 4
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    again = sdk.responses.retrieve(response.id)
    assert again.id == response.id and again.output_text == response.output_text
    items = sdk.responses.input_items.list(response.id)
    assert [item.content for item in items.data] == ["hello responses"]
    follow = sdk.responses.create(model="mock-chat", input="and more", previous_response_id=response.id)
    assert follow.previous_response_id == response.id
    assert follow.usage.input_tokens > response.usage.output_tokens, "the earlier turns are input"
    sdk.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_responses_streaming(gateway):
    _, key = new_key(gateway)
    sdk = client(gateway, key)
    events = list(sdk.responses.create(model="mock-chat", input="x [mock:words=3]", stream=True))
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "alpha bravo charlie"
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.usage.output_tokens == 3
    assert sdk.responses.retrieve(done.response.id).output_text == text
    # The SDK's stream helper accumulates the same final response.
    with sdk.responses.stream(model="mock-chat", input="y [mock:words=2]") as stream:
        final = stream.get_final_response()
    assert final.output_text == "alpha bravo"


def test_completions(gateway):
    _, key = new_key(gateway)
    answer = client(gateway, key).completions.create(model="mock-chat", prompt="hello", max_tokens=3)
    assert answer.choices[0].text == "This is a"
    assert answer.choices[0].finish_reason == "length"


def test_embeddings(gateway):
    _, key = new_key(gateway)
    answer = client(gateway, key).embeddings.create(model="mock-chat", input=["first text", "second"])
    assert len(answer.data) == 2
    assert len(answer.data[0].embedding) == 8
    assert answer.usage.prompt_tokens == 3


def test_models_list(gateway):
    _, key = new_key(gateway)
    assert [m.id for m in client(gateway, key).models.list()] == ["mock-chat"]


def test_revoked_key_is_an_authentication_error(gateway):
    key_id, key = new_key(gateway)
    sdk = client(gateway, key)
    sdk.models.list()
    call(gateway[0], "DELETE", f"/admin/v1/me/api-keys/{key_id}", token=gateway[1])
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_exceeded_budget_is_a_402_with_its_code(gateway):
    _, key = new_key(gateway, budget_limit_cents=1)
    sdk = client(gateway, key)
    ask = dict(model="mock-chat", max_tokens=5, messages=[{"role": "user", "content": "go [mock:words=9]"}])
    sdk.chat.completions.create(**ask)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(**ask)
    assert raised.value.status_code == 402
    assert raised.value.code == "budget_exceeded"
    assert raised.value.request_id, "the error names its request"
