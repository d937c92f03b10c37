//! The daemon's allocator (`src/main/main.rs`, docs/architecture.md, "The allocator"):
//! the benches that run kairos in their own process measure its code paths as the
//! daemon runs them. Each calls `kairos::allocator::tune()` first in `main`.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
