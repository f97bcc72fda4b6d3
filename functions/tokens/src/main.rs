//! The tokens group's Lambda: personal API keys and workspace tokens (and, later, project tokens).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Tokens]).await
}
