//! `git-remote-secdeliv <remote> <url>`: run by git for `secdeliv::` URLs.

fn main() -> std::process::ExitCode {
    git_remote::helper::main()
}
