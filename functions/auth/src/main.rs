//! The auth group's Lambda: setup, login/refresh, me, users, roles, sessions.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run(&[tollgate::Group::Auth]).await
}
