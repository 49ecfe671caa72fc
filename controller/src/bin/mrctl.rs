use clap::Parser;

fn main() {
    let cli = mirror_registry::cli::Cli::parse();
    let code = match mirror_registry::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
