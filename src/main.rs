// mimalloc: the request path allocates many small, short-lived buffers (JSON, JWS parts, TLS
// records); glibc malloc spent about 14% of a registration's CPU time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dcr_server::cli::main()
}
