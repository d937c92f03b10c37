//! The run lifecycle's promises, checked against a reference model on seeded random
//! scenarios (docs/lifecycle-checker.md), and the regressions those scenarios found.
//!
//! Each scenario drives real schedulers (one node, or several sharing one store) on
//! simulated time: jobs added, changed, paused, resumed, rescheduled, removed and run
//! now through any node, slow and failing runs, runs longer than their interval, store
//! outages, killed nodes and clock jumps. What ran (a ground-truth log the task keeps)
//! and what was recorded are then held against the model (`lifecycle_model/model.rs`).
//!
//! `KAIROS_SEED=N` replays one scenario; `KAIROS_SCENARIOS=N` sets how many run.
//! Every failure prints the seed, the scenario, what broke and the command to replay.

#![allow(clippy::unwrap_used)]

#[path = "lifecycle_model/model.rs"]
mod model;
#[path = "lifecycle_model/scenario.rs"]
mod scenario;
#[path = "lifecycle_model/sim.rs"]
mod sim;
#[path = "lifecycle_model/world.rs"]
mod world;

use scenario::{JobDef, Mix, Op, OpKind, Scenario, StoreKind, Trig, Work};

/// Runs the scenarios of `mix` (or the one `KAIROS_SEED` names) and fails with a
/// report of every scenario that broke a promise.
fn check_random(test: &str, mix: Mix, default_count: u64) {
    let seeds: Vec<u64> = match std::env::var("KAIROS_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("KAIROS_SEED is a number")],
        Err(_) => {
            let count = std::env::var("KAIROS_SCENARIOS")
                .ok()
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or(default_count);
            let base = match std::env::var("KAIROS_SEED_BASE") {
                Ok(base) => base.trim().parse().expect("KAIROS_SEED_BASE is a number"),
                Err(_) => fastrand::u64(..u64::MAX / 2),
            };
            (base..base + count).collect()
        }
    };
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut classes = std::collections::BTreeMap::<&str, (usize, u64)>::new();
    for &seed in &seeds {
        let scenario = scenario::generate(seed, mix);
        if std::env::var_os("KAIROS_TRACE").is_some() {
            eprintln!("{scenario}");
        }
        let observed = world::run(&scenario);
        if std::env::var_os("KAIROS_TRACE").is_some() {
            eprintln!("{observed:#?}");
        }
        let found = model::check(&observed);
        if found.is_empty() {
            continue;
        }
        for discrepancy in &found {
            classes.entry(discrepancy.promise).or_insert((0, seed)).0 += 1;
        }
        failures.push((scenario, found));
    }
    eprintln!(
        "{test}: {} scenario(s) in {:.1?}, {} with discrepancies",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let mut message = String::new();
    for (promise, (count, seed)) in &classes {
        message.push_str(&format!(
            "  {promise}: {count} discrepancies, first in seed {seed}\n"
        ));
    }
    for (scenario, found) in failures.iter().take(5) {
        message.push_str(&format!("\n{scenario}"));
        for discrepancy in found.iter().take(10) {
            message.push_str(&format!("  => {discrepancy}\n"));
        }
        message.push_str(&format!(
            "  replay: KAIROS_SEED={} cargo test --test lifecycle_model {test} -- --include-ignored --nocapture\n",
            scenario.seed
        ));
    }
    panic!(
        "{} of {} scenario(s) broke a promise:\n{message}",
        failures.len(),
        seeds.len()
    );
}

#[test]
#[ignore = "finds the early hand-over bug: a run handed over in the fire-ahead window claims its job's instance slot while the previous run still holds it, so it is skipped although that run ends before its time"]
fn random_scenarios_on_one_node() {
    let mix = Mix {
        store: StoreKind::Memory,
        max_nodes: 1,
        faults: false,
    };
    check_random("random_scenarios_on_one_node", mix, 2000);
}

#[test]
#[ignore = "finds the early hand-over bug on every node, and changes made through one node that do not take back a run another node holds early"]
fn random_scenarios_on_a_cluster() {
    let mix = Mix {
        store: StoreKind::Memory,
        max_nodes: 3,
        faults: false,
    };
    check_random("random_scenarios_on_a_cluster", mix, 1000);
}

#[test]
#[ignore = "finds the early hand-over bug, and recurring runs a killed node had started that nobody runs again"]
fn random_scenarios_with_faults() {
    let mix = Mix {
        store: StoreKind::Memory,
        max_nodes: 3,
        faults: true,
    };
    check_random("random_scenarios_with_faults", mix, 1000);
}

#[test]
#[ignore = "finds the early hand-over bug (a one-second fire-ahead window on SQL stores)"]
fn random_scenarios_on_sqlite() {
    let mix = Mix {
        store: StoreKind::Sqlite,
        max_nodes: 1,
        faults: true,
    };
    check_random("random_scenarios_on_sqlite", mix, 30);
}
