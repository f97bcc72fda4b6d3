//! Other gateways beside ours, when installed: LiteLLM and Portkey's.

use super::*;

pub(crate) fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

pub(crate) async fn wait_up(client: &reqwest::Client, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// LiteLLM's proxy, configured with the three models on our upstream.
pub(crate) fn start_litellm(dir: &std::path::Path, port: u16, upstream: &Upstream) -> anyhow::Result<Option<(Child, Via)>> {
    let bin = match std::env::var_os("LITELLM_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => match on_path("litellm") {
            Some(b) => b,
            None => return Ok(None),
        },
    };
    // Recent versions refuse to start without a master key, which clients then present.
    let mut config = format!("general_settings:\n  master_key: {LITELLM_KEY}\nmodel_list:\n");
    for model in [INSTANT, PACED, HELD] {
        config += &format!(
            "  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      api_base: http://{}/v1\n      api_key: sk-bench\n",
            upstream.addr
        );
    }
    let path = dir.join("litellm.yaml");
    std::fs::write(&path, config)?;
    let child = Child(
        std::process::Command::new(&bin)
            .args(["--config", &path.to_string_lossy(), "--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"])
            // Its bundled price list, not a fetch from GitHub at start (this machine may be offline).
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let via = Via {
        name: "litellm".into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![("authorization".into(), format!("Bearer {LITELLM_KEY}"))],
        pid: Some(child.id()),
        gateway: true,
    };
    Ok(Some((child, via)))
}

/// The master key of the LiteLLM proxy the benchmark starts (local, for this run only).
const LITELLM_KEY: &str = "sk-tollgate-bench-litellm";

/// Portkey's open-source gateway (node), sent to our upstream by its custom-host headers.
pub(crate) fn start_portkey(port: u16, upstream: &Upstream) -> anyhow::Result<Option<(Child, Via)>> {
    let args = [format!("--port={port}"), "--headless".into()];
    let mut command = if let Some(bin) = std::env::var_os("PORTKEY_BIN") {
        std::process::Command::new(bin)
    } else {
        // Installed for node, here or globally (`npm i -g @portkey-ai/gateway`); never fetched.
        let global = std::process::Command::new("npm").args(["root", "-g"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let script = [Some("node_modules".to_string()), global]
            .into_iter()
            .flatten()
            .map(|root| std::path::Path::new(&root).join("@portkey-ai/gateway/build/start-server.js"))
            .find(|p| p.is_file());
        match (script, on_path("node")) {
            (Some(script), Some(node)) => {
                let mut c = std::process::Command::new(node);
                c.arg(script);
                c
            }
            _ => return Ok(None),
        }
    };
    let child = Child(command.args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn()?);
    let via = Via {
        name: "portkey".into(),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![
            ("authorization".into(), "Bearer sk-bench".into()),
            ("x-portkey-provider".into(), "openai".into()),
            ("x-portkey-custom-host".into(), format!("http://{}/v1", upstream.addr)),
        ],
        pid: Some(child.id()),
        gateway: true,
    };
    Ok(Some((child, via)))
}
