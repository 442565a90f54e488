//! The `persodesk` binary.

fn main() -> std::process::ExitCode {
    persodesk::cli::main()
}
