fn main() -> std::process::ExitCode {
    dcr_server::cli::main()
}
