//! How a Router is served: by the Lambda runtime when `AWS_LAMBDA_RUNTIME_API` is set (inside
//! Lambda), as a plain HTTP server otherwise. Each function's main.rs is one call to `run`.

use std::net::SocketAddr;

use crate::config::Config;
use crate::http::{self, Group};
use crate::state::AppState;

/// Logs to stdout, filtered by `TOLLGATE_LOG` (default `info`): as text, or with
/// `TOLLGATE_LOG_FORMAT=json` as one JSON object per line, with an access line per request
/// (`http::ops::measure`). An unknown format is refused when the configuration is read.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if std::env::var("TOLLGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// Serves `groups` with configuration from the environment.
pub async fn run(groups: &[Group]) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::from_env()?;
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let state = AppState::open(config.clone(), false).await?;
    let app = http::app(state.clone(), groups);
    if in_lambda && groups.contains(&Group::Proxy) {
        // Behind a Function URL in RESPONSE_STREAM mode: chunks reach the client as produced.
        lambda_http::run_with_streaming_response(app).await.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
    } else if in_lambda {
        lambda_http::run(app).await.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
    } else {
        // Served as a plain process (one group alone, locally): it delivers budget events too.
        state.spawn_background();
        let listener = bind(config.listen).await?;
        serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    }
}

/// The usage group's rollups function: inside Lambda, invoked by the table's stream (and a
/// schedule); run by hand, it adds whatever is pending once and says how many.
pub async fn run_rollups() -> anyhow::Result<()> {
    init_tracing();
    let config = Config::from_env()?;
    let state = AppState::open(config, false).await?;
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let added = crate::usage::rollups::roll_up(state.store.as_ref()).await?;
        println!("added {added} pending usage records to their rollups");
        return Ok(());
    }
    let handler = lambda_http::service_fn(move |event: lambda_http::LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        async move {
            let added = crate::usage::stream::handle(state.store.as_ref(), event.payload).await.map_err(|e| e.to_string())?;
            tracing::info!(added, "usage records added to their rollups");
            Ok::<_, String>(serde_json::json!({ "added": added }))
        }
    });
    lambda_http::lambda_runtime::run(handler).await.map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))
}

/// Serves until `shutdown` completes, letting requests in flight finish, on connections with
/// Nagle's algorithm off and hyper's own error answers enveloped (`http::wire`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = http::wire::EnvelopedListener(listener);
    axum::serve(listener, app.into_make_service_with_connect_info::<http::wire::Peer>()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
