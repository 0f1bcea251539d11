//! A game's own server: the `tickrelay` command line, with every flag, setting and
//! endpoint it has, plus one simulation of the game's, Tag ([`game`]). Registering it
//! gives the relay a room type `tag` running it; `[room_types.tag]` in a
//! configuration file tunes the room settings, `[room_types.tag.params]` the game's
//! ([`game::TagParams`]).
//!
//! ```sh
//! cargo run --release --example tag                 # serves wss://127.0.0.1:7443/ws
//! cargo run --release -p tickrelay-bots -- --room-type tag --rooms 1 --members 8 \
//!     --cert tickrelay-dev-cert.pem --duration-secs 20
//! ```

use std::process::ExitCode;

mod game;

/// mimalloc, as the `tickrelay` binary has: about a tenth less CPU per delivered
/// frame than glibc's malloc (BENCHMARKS.md, "mimalloc"). A game's binary picks its
/// own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let simulations = tickrelay::config::Simulations::new().add_with_params("tag", game::Tag::new);
    tickrelay::cli::main(simulations)
}
