//! The `peerphone` binary: everything lives in the `app` library.

fn main() -> std::process::ExitCode {
    app::cli::main()
}
