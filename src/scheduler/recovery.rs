//! What an earlier run of this node, or a dead node, left in a store: an earlier
//! incarnation's leases and instance slots are freed before the first pass
//! ([`recover_store`]), and the runs a dead node had going are run again
//! ([`replay_orphaned_runs`]; docs/lifecycle.md, "Held until the run ends").

use super::hand_over::{hand_over, record_unstarted, HandOver};
use super::Inner;
use crate::history::RunOutcome;
use crate::store::{InstanceClaim, JobStore};

/// Frees the leases and instance slots an earlier run of this scheduler left in the
/// stores still marked `unrecovered` ([`recover_store`]); the stores that could not be
/// reached stay marked, and are tried again before the next pass.
pub(super) async fn recover_earlier_run(inner: &Inner) {
    let unrecovered: Vec<String> = inner.lock().unrecovered.iter().cloned().collect();
    for name in unrecovered {
        recover_store(inner, &name).await;
    }
}

/// Frees what an earlier run of this scheduler (same id) left in the store `name`
/// ([`crate::store::InstanceSlots::recover_owner`]), once: the loop calls it before its
/// first pass, "run now" before it claims a slot there, whichever comes first. One at a
/// time, so a recovery never frees a slot claimed after another finished. Whether the store
/// is recovered.
pub(super) async fn recover_store(inner: &Inner, name: &str) -> bool {
    // Recovered long ago, nearly always: no need to queue behind a recovery then.
    if !inner.lock().unrecovered.contains(name) {
        return true;
    }
    let _one_at_a_time = inner.recovery.lock().await;
    if !inner.lock().unrecovered.contains(name) {
        return true;
    }
    let Some(store) = inner.stores.get(name) else {
        return true;
    };
    match store.recover_owner(&inner.id).await {
        Ok(freed) => {
            if freed > 0 {
                tracing::info!(
                    jobstore = name,
                    scheduler_id = inner.id,
                    freed,
                    "freed the leases and instance slots an earlier run of this scheduler left"
                );
            }
            // Its runs of jobs that allow several at once are run again.
            let mut mutable = inner.lock();
            mutable.unrecovered.remove(name);
            mutable.orphans_to_take.insert(name.to_owned());
            true
        }
        Err(error) => {
            tracing::warn!(jobstore = name, %error, "could not free leases left by an earlier run; will retry");
            false
        }
    }
}

/// Takes the orphaned runs of the store `name`
/// ([`crate::store::InstanceSlots::take_orphaned_runs`]: runs of jobs that allow several at
/// once whose node died while they went) and runs them again here, now, each in the
/// instance slot it held: at least once across a crash (`docs/lifecycle.md`, "Held until
/// the run ends"). A job paused since has them recorded as skipped instead: a pause wins
/// over a run not yet done, as it does over a pending retry. Whether the store answered.
pub(super) async fn replay_orphaned_runs(inner: &Inner, name: &str) -> bool {
    let Some(store) = inner.stores.get(name).cloned() else {
        return true;
    };
    let orphans = match store.take_orphaned_runs(&inner.id).await {
        Ok(orphans) => orphans,
        Err(error) => {
            tracing::warn!(jobstore = name, %error, "could not take the runs of dead nodes; will retry");
            return false;
        }
    };
    for orphan in orphans {
        let job = &orphan.job;
        let (Some(&first), now) = (orphan.run_times.first(), inner.clock.now()) else {
            continue;
        };
        // The node died before it wrote the job's next run time (the write-back waits
        // for the run's time and its check): the job is still at this time, and the
        // lease that runs out (or the reap) hands that time to a node as any due run.
        // Running the orphan too would run it twice.
        let still_due = job.next_run_time.is_some_and(|next| next <= first);
        if job.paused || still_due {
            if let Err(error) = store.release_instance(&job.id, &inner.id).await {
                tracing::warn!(job_id = job.id, %error, "could not free the instance slot of a dead node's run");
            }
            if job.paused {
                record_unstarted(
                    inner,
                    name,
                    job,
                    first,
                    now,
                    RunOutcome::Skipped,
                    "its node died while it ran, and the job is paused since".to_owned(),
                )
                .await;
            }
            continue;
        }
        tracing::warn!(
            jobstore = name,
            job_id = job.id,
            scheduled_time = %first,
            runs = orphan.run_times.len(),
            "running again a run whose node died while it went"
        );
        // `max_instances` as the job has it now: a limit lowered since the dead node
        // started the run may leave no room for it beside the runs going now
        // (docs/lifecycle.md, "Held until the run ends"). A claim that counts its own
        // slot too tells: granted, it fits and runs at once in its slot (the extra one
        // given back); refused, its slot is given back and it claims one at its start
        // like any run due then, waiting, replacing or skipped as the job's `overlap`
        // says. A store that cannot answer leaves it in its slot, as it was.
        let slot_claimed = orphan_fits(inner, store.as_ref(), &orphan).await;
        hand_over(
            inner,
            name,
            store.as_ref(),
            job,
            &orphan.run_times,
            now,
            HandOver {
                final_release: None,
                slot_claimed,
                released_next: job.next_run_time,
                checked_revision: job.revision,
            },
        )
        .await;
    }
    true
}

/// Whether an orphaned run taken by this node fits under its job's `max_instances`
/// now, its own slot counted, and so keeps that slot; otherwise the slot is given back
/// and the run claims one at its start ([`replay_orphaned_runs`]).
pub(super) async fn orphan_fits(
    inner: &Inner,
    store: &dyn JobStore,
    orphan: &crate::store::OrphanedRun,
) -> bool {
    let job = &orphan.job;
    let claim = InstanceClaim {
        job_id: job.id.clone(),
        max_instances: job.max_instances.saturating_add(1),
        run_times: orphan.run_times.clone(),
        // It asks about the slot it holds, not a new one: a run waiting elsewhere is
        // waiting for a slot besides this one (`InstanceSlots::wait_for_instance`).
        queues: false,
    };
    let fits = match store.claim_instances(&inner.id, &[claim]).await {
        Ok(granted) => granted.first().copied().unwrap_or(false),
        Err(error) => {
            tracing::warn!(job_id = job.id, %error, "could not judge a dead node's run by the job's limit; running it in its slot");
            return true;
        }
    };
    // Granted: one of its two slots is extra. Refused: its own goes, and it claims anew.
    match store.release_instance(&job.id, &inner.id).await {
        Ok(()) => fits,
        Err(error) => {
            tracing::warn!(job_id = job.id, %error, "could not give back an instance slot of a dead node's run; running it in its slot");
            true
        }
    }
}
