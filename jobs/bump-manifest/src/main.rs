use clap::Parser;
use kit::env::ProcessEnv;

fn main() -> std::process::ExitCode {
    let opts = bump_manifest::Options::parse();
    kit::exit::finish("bump-manifest", bump_manifest::run(&opts, &ProcessEnv))
}
