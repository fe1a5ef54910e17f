fn main() -> std::process::ExitCode {
    fieldsync_server::cli::main()
}
