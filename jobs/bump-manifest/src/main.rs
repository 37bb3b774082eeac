fn main() -> std::process::ExitCode {
    kit::job::main::<bump_manifest::Job>()
}
