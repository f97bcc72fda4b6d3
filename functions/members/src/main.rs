//! The members group's Lambda: workspaces, members, invitations, projects and project members.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Members]).await
}
