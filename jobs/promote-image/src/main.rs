use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = promote_image::cli::Args::parse();
    kit::exit::finish(
        "promote-image",
        promote_image::run(&args, &kit::env::ProcessEnv),
    )
}
