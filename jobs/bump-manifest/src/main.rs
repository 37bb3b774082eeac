use clap::Parser;
use kit::env::ProcessEnv;

fn main() -> std::process::ExitCode {
    // git runs this binary as `git-remote-secdeliv` (--git-transport builtin).
    if bump_manifest::remote_helper::invoked_as_helper() {
        return bump_manifest::remote_helper::main();
    }
    let opts = bump_manifest::Options::parse();
    kit::exit::finish("bump-manifest", bump_manifest::run(&opts, &ProcessEnv))
}
