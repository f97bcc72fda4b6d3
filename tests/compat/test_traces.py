"""Traces as a collector receives them: `tollgate serve` with OTEL_EXPORTER_OTLP_ENDPOINT set
sends OTLP over HTTP/protobuf to a local receiver that decodes each export with the official
protobuf definitions (the `opentelemetry-proto` package). A proxied request is one span that
continues the caller's `traceparent`, with the admission, the upstream attempt and the
settlement beneath it; the attempt's own context reaches the upstream (a local server speaking
OpenAI's chat completions); GenAI attributes are set, and the prompt is nowhere in the spans.
Run by scripts/test after `cargo test`."""

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from conftest import call, running_gateway

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PROMPT = "a secret prompt that must not be traced"


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint: POST /v1/traces with an ExportTraceServiceRequest."""

    exports = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces", self.path
        assert self.headers["Content-Type"] == "application/x-protobuf", self.headers["Content-Type"]
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        Receiver.exports.append(request)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class Upstream(BaseHTTPRequestHandler):
    """OpenAI's chat completions, as its API reference shows the answer."""

    traceparents = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Upstream.traceparents.append(self.headers.get("traceparent"))
        answer = json.dumps({
            "id": "chatcmpl-trace", "object": "chat.completion", "created": 1700000000, "model": request["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "traced"}, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def traced():
    receiver, upstream = serve(Receiver), serve(Upstream)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}", "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "tollgate-test"}
    try:
        with running_gateway("traces@example.com", env_extra=env) as (base, admin):
            call(base, "POST", "/api/models", {"id": "traced-model", "provider": "openai-compatible", "baseUrl": f"http://127.0.0.1:{upstream.server_port}/v1",
                                               "apiKey": "sk-upstream", "inputPrice": 1, "outputPrice": 2, "contextWindow": 4096}, admin)
            key = call(base, "POST", "/admin/v1/me/api-keys", {"name": "traced"}, admin)
            yield base, key
    finally:
        receiver.shutdown()
        upstream.shutdown()


def spans_of(trace_id):
    """Every span of `trace_id` the receiver has, once the request's span has arrived."""
    for _ in range(100):
        spans = [(resource, span) for export in Receiver.exports for resource in export.resource_spans
                 for scope in resource.scope_spans for span in scope.spans if span.trace_id.hex() == trace_id]
        if any(span.kind == Span.SPAN_KIND_SERVER for _, span in spans):
            return spans
        time.sleep(0.1)
    raise AssertionError(f"no request span of {trace_id} arrived; exports: {len(Receiver.exports)}")


def attributes(span):
    out = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = [v.string_value for v in value.array_value.values] if kind == "array_value" else getattr(value, kind)
    return out


def test_a_request_is_one_span_with_its_admission_attempt_and_settlement(traced):
    base, key = traced
    request = {"model": "traced-model", "max_tokens": 5, "messages": [{"role": "user", "content": PROMPT}]}
    r = urllib.request.Request(base + "/v1/chat/completions", method="POST", data=json.dumps(request).encode())
    r.add_header("Content-Type", "application/json")
    r.add_header("Authorization", f"Bearer {key['key']}")
    r.add_header("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    with urllib.request.urlopen(r) as response:
        assert json.loads(response.read())["choices"][0]["message"]["content"] == "traced"

    spans = spans_of(CALLER_TRACE)
    resource = spans[0][0].resource
    assert {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"] == "tollgate-test"
    root = next(span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER)
    # The caller's trace continues: its span is the request span's parent.
    assert root.parent_span_id.hex() == CALLER_SPAN
    assert root.name == "chat traced-model"
    children = [span for _, span in spans if span.parent_span_id == root.span_id]
    assert sorted((span.name, span.kind) for span in children) == [
        ("chat traced-model", Span.SPAN_KIND_CLIENT), ("tollgate.admission", Span.SPAN_KIND_INTERNAL), ("tollgate.settlement", Span.SPAN_KIND_INTERNAL)]
    assert len(spans) == 4
    for child in children:
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano <= root.end_time_unix_nano, child.name
    attempt = next(span for span in children if span.kind == Span.SPAN_KIND_CLIENT)
    # The attempt's own context went upstream.
    assert Upstream.traceparents[-1] == f"00-{CALLER_TRACE}-{attempt.span_id.hex()}-01"

    got = attributes(root)
    assert got["gen_ai.operation.name"] == "chat"
    assert got["gen_ai.request.model"] == "traced-model" and got["gen_ai.response.model"] == "traced-model"
    assert got["gen_ai.provider.name"] == "openai-compatible"
    assert (got["gen_ai.usage.input_tokens"], got["gen_ai.usage.output_tokens"]) == (9, 1)
    assert got["gen_ai.response.finish_reasons"] == ["stop"]
    assert got["tollgate.key_id"] == key["id"]
    assert got["tollgate.cost_usd"] == pytest.approx((9 * 1 + 1 * 2) / 1e6)
    assert got["tollgate.fallback"] is False
    assert root.status.code != Status.STATUS_CODE_ERROR
    assert attributes(attempt)["gen_ai.request.model"] == "traced-model"
    # Prompts are not recorded unless the operator opts in.
    for _, span in spans:
        assert PROMPT not in str(span), span.name


def test_a_refusal_ends_its_span_as_an_error(traced):
    base, _ = traced
    trace = "5bf92f3577b34da6a3ce929d0e0e4737"
    r = urllib.request.Request(base + "/v1/chat/completions", method="POST", data=json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}).encode())
    r.add_header("Content-Type", "application/json")
    r.add_header("Authorization", f"Bearer {traced[1]['key']}")
    r.add_header("traceparent", f"00-{trace}-{CALLER_SPAN}-01")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(r)
    spans = spans_of(trace)
    root = next(span for _, span in spans if span.kind == Span.SPAN_KIND_SERVER)
    assert root.status.code == Status.STATUS_CODE_ERROR
    assert attributes(root)["http.response.status_code"] == refused.value.code
