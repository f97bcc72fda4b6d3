//! The members group's Lambda: workspaces, their members and invitations.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Members]).await
}
