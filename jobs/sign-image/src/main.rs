//! sign-image: see the library for the job's shape.

fn main() -> std::process::ExitCode {
    kit::job::main::<sign_image::Job>()
}
