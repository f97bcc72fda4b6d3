//! The usage group's rollups function: consumes the table's stream of pending usage records
//! (see `tollgate::usage::stream`).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate::runtime::run_rollups().await
}
