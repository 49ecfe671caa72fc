use std::path::PathBuf;

use crate::api::load;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Spec files to check.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args) -> super::Result<i32> {
    let mut code = 0;
    for file in &args.files {
        let result = std::fs::read(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|bytes| load::parse(file, &bytes).map_err(|e| e.to_string()));
        match result {
            Ok(l) => outln!("{}: valid (MirrorRegistry {})", file.display(), l.name),
            Err(e) => {
                outln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
