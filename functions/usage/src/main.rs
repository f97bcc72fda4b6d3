//! The usage group's Lambda: usage records and, later, the usage views.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Usage]).await
}
