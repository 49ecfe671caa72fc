//! `mrctl restore -f FILE.tar`.
use super::super::state::Paths;
use super::super::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
}

pub async fn run(_paths: &Paths, _a: Args) -> Result<i32> {
    Ok(0)
}
