fn main() -> std::process::ExitCode {
    kit::job::main::<scan_image::Job>()
}
