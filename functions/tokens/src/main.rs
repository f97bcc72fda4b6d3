//! The tokens group's Lambda: personal API keys (and, later, workspace and project tokens).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Tokens]).await
}
