//! The Lua scripts of the Redis store, one per step that must be atomic.
//!
//! Each script lives in `lua/` next to this file, with its KEYS and ARGV written at its
//! top; the store calls it by EVALSHA, and the `redis` crate's [`Script`] loads it again
//! when Redis answers NOSCRIPT (after a restart or `SCRIPT FLUSH`), so nothing needs
//! loading at connect time.
//!
//! # Ground rules
//! - Redis runs a script alone, start to finish: a script is the unit of atomicity
//!   here, the way a transaction is in the SQL stores. Anything that reads one structure
//!   and writes another based on it is one script, never a read then a write from Rust.
//! - Scripts never read Redis's clock (`TIME`): instants come in as ARGV, in
//!   microseconds since the epoch, from the caller's clock.
//! - Scripts never decode or re-encode a job's JSON (cjson would turn `[]` into `{}` and
//!   round big integers in task args); what they change (next run time, revision, lease)
//!   lives beside the JSON.

use std::sync::LazyLock;

use ::redis::Script;

/// add/replace/update: write a job and index it.
pub(super) static PUT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put.lua")));

/// Remove a job from every structure.
pub(super) static REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/remove.lua")));

/// Reclaim expired leases, then lease a batch of due jobs.
pub(super) static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/acquire.lua")));

/// Write back a batch of acquired jobs under the revision rule.
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

/// Set aside acquired jobs that could not be read.
pub(super) static QUARANTINE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/quarantine.lua")));

/// The earliest due time and lease expiry.
pub(super) static NEXT_RUN_TIME: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/next_run_time.lua")));

/// Free an instance slot.
pub(super) static RELEASE_INSTANCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release_instance.lua")));

/// Hand a job's orphaned runs to a live node.
pub(super) static TAKE_ORPHANS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/take_orphans.lua")));

/// Turn a dead owner's slots with run times into orphaned runs.
pub(super) static ORPHAN_SLOTS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/orphan_slots.lua")));

/// Append a run record.
pub(super) static RECORD_RUN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/record_run.lua")));

/// Record the next applied config, if no other node recorded it first.
pub(super) static RECORD_CONFIG: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/record_config.lua")));

/// Count jobs by state.
pub(super) static COUNT_STATES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/count_states.lua")));

/// Read the newest run records.
pub(super) static RUNS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/runs.lua")));

/// Delete old run records, a bounded batch at a time.
pub(super) static PRUNE_RUNS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/prune_runs.lua")));

/// claim_instance for a batch.
pub(super) static CLAIM_INSTANCES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim_instances.lua")));

/// Make an owner a job's waiter, or refresh its expiry.
pub(super) static WAIT_FOR_INSTANCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/wait_for_instance.lua")));

/// End an owner's waiter of a job.
pub(super) static STOP_WAITING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/stop_waiting.lua")));

/// Free the slots of finished runs and record them.
pub(super) static FINISH_RUNS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/finish_runs.lua")));

/// End the leases an earlier process with the same owner id left.
pub(super) static RECOVER_OWNER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/recover_owner.lua")));

/// Renew a node's heartbeat if it is still registered.
pub(super) static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));

/// Take nodes whose heartbeat stopped out of the membership.
pub(super) static REAP_NODES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reap_nodes.lua")));

/// Extend an owner's leases and instance slots for runs still going.
pub(super) static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script says what it takes, none reads Redis's clock, and no two are the
    /// same text (they would share a SHA1 and one would be run for the other).
    #[test]
    fn every_script_documents_its_arguments_and_hashes_apart() {
        let all = [
            &PUT,
            &REMOVE,
            &ACQUIRE,
            &RELEASE,
            &QUARANTINE,
            &NEXT_RUN_TIME,
            &RELEASE_INSTANCE,
            &RECORD_RUN,
            &RUNS,
            &PRUNE_RUNS,
            &CLAIM_INSTANCES,
            &FINISH_RUNS,
            &RECOVER_OWNER,
            &HEARTBEAT,
            &REAP_NODES,
            &RENEW,
            &TAKE_ORPHANS,
            &ORPHAN_SLOTS,
            &WAIT_FOR_INSTANCE,
            &STOP_WAITING,
        ];
        let mut hashes: Vec<&str> = all.iter().map(|script| script.get_hash()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), all.len(), "two scripts are the same text");
        for source in [
            include_str!("lua/put.lua"),
            include_str!("lua/remove.lua"),
            include_str!("lua/acquire.lua"),
            include_str!("lua/release.lua"),
            include_str!("lua/quarantine.lua"),
            include_str!("lua/next_run_time.lua"),
            include_str!("lua/release_instance.lua"),
            include_str!("lua/record_run.lua"),
            include_str!("lua/runs.lua"),
            include_str!("lua/prune_runs.lua"),
            include_str!("lua/claim_instances.lua"),
            include_str!("lua/finish_runs.lua"),
            include_str!("lua/recover_owner.lua"),
            include_str!("lua/heartbeat.lua"),
            include_str!("lua/reap_nodes.lua"),
            include_str!("lua/renew.lua"),
            include_str!("lua/take_orphans.lua"),
            include_str!("lua/orphan_slots.lua"),
            include_str!("lua/wait_for_instance.lua"),
            include_str!("lua/stop_waiting.lua"),
        ] {
            assert!(source.contains("-- KEYS:"), "{source}");
            assert!(
                !source.contains("'TIME'"),
                "scripts take time from the caller"
            );
        }
    }
}
