//! glstream: the binary. Everything it does lives in the library ([`glstream::main`]); here it
//! only installs the allocator that `bench` counts with.

use std::process::ExitCode;

/// Counts allocations (while `bench` runs) so it can show the frame loop makes none.
#[global_allocator]
static ALLOCATOR: glstream::CountingAllocator = glstream::CountingAllocator;

fn main() -> ExitCode {
    glstream::main()
}
