fn main() -> std::process::ExitCode {
    containerd_verifier::main()
}
