//! The `tickrelay` binary: the command line ([`tickrelay::cli`]) with the built-in
//! simulations only.

use std::process::ExitCode;

/// mimalloc, not the system allocator: the relay allocates and frees small buffers on
/// one thread and frees some on another (an input's payload, a frame's bytes); with
/// glibc's malloc that cost about a tenth of its CPU per delivered frame more
/// (BENCHMARKS.md, "mimalloc").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tickrelay::cli::main(tickrelay::config::Simulations::new())
}
