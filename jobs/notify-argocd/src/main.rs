//! notify-argocd: flags, config, run and exit code are in the library.

fn main() -> std::process::ExitCode {
    kit::job::main::<notify_argocd::Job>()
}
