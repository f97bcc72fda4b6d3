//! The providers group's Lambda: the models catalog (and, later, dynamic providers and integrations).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Providers]).await
}
