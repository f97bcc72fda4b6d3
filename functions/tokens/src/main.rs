//! The tokens group's Lambda: personal API keys, workspace tokens and project tokens.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Tokens]).await
}
