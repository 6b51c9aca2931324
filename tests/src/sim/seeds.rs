//! Which seeds a test runs (`SIM_SEED`, `SIM_SEEDS`, `SIM_SEED_BASE`) and
//! how a failing one is reported so it can be replayed.

use std::panic::{self, AssertUnwindSafe};

/// The seeds a test runs: `SIM_SEED=<n>` runs only that one; otherwise
/// `SIM_SEEDS=<count>` seeds (default `default_count`) from `SIM_SEED_BASE`
/// (default 0).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("SIM_SEEDS").unwrap_or(default_count);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    (base..base + count).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Run `f` for each seed; when one panics, say how to replay it and fail.
pub fn for_each_seed(test: &str, seeds: &[u64], f: impl Fn(u64)) {
    for &seed in seeds {
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| f(seed))) {
            eprintln!(
                "\n{test} failed for seed {seed}; replay it with:\n    \
                 SIM_SEED={seed} cargo test -p tests {test}\n"
            );
            panic::resume_unwind(e);
        }
    }
}
