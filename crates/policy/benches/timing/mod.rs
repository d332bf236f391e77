//! What the policy crate's benches share.

use std::time::{Duration, Instant};

/// Runs `f` repeatedly for at least `budget`, returns the best time of one run over five rounds.
pub fn best_of(budget: Duration, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut runs = 0u32;
        while start.elapsed() < budget / 5 || runs == 0 {
            f();
            runs += 1;
        }
        best = best.min(start.elapsed() / runs);
    }
    best
}
