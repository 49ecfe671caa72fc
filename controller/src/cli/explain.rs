use crate::api::schema;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Field path, e.g. `spec`, `spec.tls`, `status.conditions`.
    #[arg(default_value = "")]
    pub field: String,
}

pub fn run(args: Args) -> super::Result<i32> {
    match schema::explain(&args.field) {
        Ok(text) => {
            out!("{text}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}
