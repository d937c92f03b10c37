//! Renewal: what a live node holds for its runs in flight stays held for as long as
//! they run (the "started" step of `docs/lifecycle.md`).
//!
//! A job whose run is going stays leased to this node until the run's end writes it
//! back, and the run's instance slot counts until then. Both run out on their own
//! (the lease, five minutes by default; a slot, the store's instance time-to-live) so
//! that a dead node's work is taken over; a run longer than either must therefore
//! renew them, or another node would start the same run, or a run beside it past
//! `max_instances`. Every third of a lease this task renews, in each store, the leases
//! and slots of the jobs with runs in flight here.
//!
//! ```text
//! lease 5 min, a run of 2 h:
//!   take ── run ──────────────────────────────────────────── end: write back
//!          renew  renew  renew  …  (every 100 s, lease and slot)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::TimeDelta;

use super::{Inner, SchedulerState};

/// Renews every third of a lease until the scheduler stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut state = inner.state.subscribe();
    let every = TimeDelta::from_std(inner.lease / 3)
        .unwrap_or(TimeDelta::MAX)
        .max(TimeDelta::milliseconds(10));
    loop {
        let Some(next) = inner.clock.now().checked_add_signed(every) else {
            return;
        };
        while inner.clock.now() < next {
            tokio::select! {
                () = inner.clock.sleep_until(next) => {}
                changed = state.changed() => {
                    if changed.is_err() || *state.borrow_and_update() == SchedulerState::Stopped {
                        return;
                    }
                }
            }
        }
        renew(&inner).await;
    }
}

/// One round: the jobs with runs in flight (or handed over and waiting for their
/// time), by store.
pub(crate) async fn renew(inner: &Inner) {
    let held: BTreeMap<String, BTreeSet<String>> = {
        let mutable = inner.lock();
        let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for place in mutable.run_stores.values() {
            let ids = match held.get_mut(&*place.jobstore) {
                Some(ids) => ids,
                None => held.entry(place.jobstore.to_string()).or_default(),
            };
            ids.insert(place.job_id.clone());
        }
        for (jobstore, deferred) in &mutable.deferred_releases {
            let ids = held.entry(jobstore.clone()).or_default();
            ids.extend(deferred.iter().map(|entry| entry.release.job_id.clone()));
        }
        held
    };
    for (jobstore, ids) in held {
        let Some(store) = inner.stores.get(&jobstore) else {
            continue;
        };
        let ids: Vec<String> = ids.into_iter().collect();
        // Leases are measured from the horizon the loop acquires at (now plus the
        // fire-ahead window), and other nodes judge them expired against theirs: from
        // now alone, a renewed lease would look a window shorter than it is.
        let now = inner.clock.now();
        let base = now
            .checked_add_signed(TimeDelta::from_std(inner.fire_ahead).unwrap_or_default())
            .unwrap_or(now);
        if let Err(error) = store
            .renew_holdings(&inner.id, &ids, base, inner.lease)
            .await
        {
            // The next round tries again; a lease has three rounds before it runs out.
            tracing::warn!(jobstore, jobs = ids.len(), %error, "could not renew the leases of runs in flight");
        }
    }
}
