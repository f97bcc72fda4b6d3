//! The proxy group's Lambda: the OpenAI-compatible proxy, streaming.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Proxy]).await
}
