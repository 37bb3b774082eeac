use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = scan_image::cli::Args::parse();
    kit::exit::finish(
        "scan-image",
        scan_image::scan::run(&args, &kit::env::ProcessEnv),
    )
}
