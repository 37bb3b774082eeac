fn main() -> std::process::ExitCode {
    kit::job::main::<promote_image::Job>()
}
