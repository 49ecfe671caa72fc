use clap::Parser;

fn main() {
    let cli = mirror_registry::cli::Cli::parse();
    std::process::exit(mirror_registry::cli::run(cli));
}
