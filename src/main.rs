//! The `persodesk` binary.

/// mimalloc: per-thread free lists make the batch pipeline's many small, short-lived
/// allocations (and frees on another thread than the one that allocated) several times
/// cheaper than glibc's malloc (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    persodesk::cli::main()
}
