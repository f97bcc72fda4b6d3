//! `tollgate-forwarder LISTEN UPSTREAM_URL`: the floor any proxy built from the gateway's own
//! parts stands on. One axum route that sends the request's bytes to the upstream with the
//! same pooled reqwest client the gateway uses and relays the answer as it comes (streams
//! included), on the same allocator and runtime, with nothing else: no authentication, no
//! limits, no usage record. `tollgate-bench` runs it beside the gateway, so what the gateway
//! costs above this is the price of its work, and what this costs above the direct path is
//! the price of one more HTTP hop on this machine.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

async fn forward(State(up): State<Upstream>, body: Bytes) -> Response {
    let sent = up.client.post(up.url.clone()).header(header::CONTENT_TYPE, "application/json").body(body).send().await;
    match sent {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            if let Some(kind) = answer.headers().get(header::CONTENT_TYPE) {
                response = response.header(header::CONTENT_TYPE, kind);
            }
            response.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(url)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: tollgate-forwarder LISTEN_ADDR UPSTREAM_URL");
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    let up = Upstream { client, url: reqwest::Url::parse(url)? };
    // As the gateway serves: without Nagle's algorithm on accepted connections.
    let listener = axum::serve::ListenerExt::tap_io(tokio::net::TcpListener::bind(listen).await?, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/v1/chat/completions", post(forward)).with_state(up);
    axum::serve(listener, app).await?;
    Ok(())
}
