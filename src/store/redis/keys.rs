//! The Redis store's key names: the layout table in the parent module's docs, as code.
//!
//! Built once per store from its prefix, so no call formats a key on the hot path
//! except the per-job ones (instance slots, a job's run index).

/// The store's key names (the parent module's docs say what each holds).
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
    pub(super) jobs: String,
    pub(super) revs: String,
    pub(super) next: String,
    pub(super) due: String,
    pub(super) leases: String,
    pub(super) owners: String,
    pub(super) broken: String,
    pub(super) seq: String,
    /// Id → the job's schedule version and schedule key (put.lua).
    pub(super) sched: String,
    /// Acquired id → the schedule version its lease took (acquire.lua).
    pub(super) lease_sched: String,
    pub(super) runs: String,
    pub(super) run: String,
    pub(super) run_seq: String,
    /// The ids of the jobs that have run records (prune_runs.lua walks it).
    pub(super) run_jobs: String,
    pub(super) nodes: String,
    pub(super) beats: String,
    pub(super) configs: String,
    /// The ids of the jobs with orphaned runs (take_orphans.lua).
    pub(super) orphans: String,
    /// The ids of the jobs with a waiter (`wait:ID`), for a recovery or a reap to find
    /// a dead owner's without a SCAN.
    pub(super) waiters: String,
    /// Not a key: the pub/sub channel writes are announced on (`store/wake.rs`).
    pub(super) wake: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{prefix}{name}");
        Keys {
            prefix: prefix.to_owned(),
            jobs: key("jobs"),
            revs: key("revs"),
            next: key("next"),
            due: key("due"),
            leases: key("leases"),
            owners: key("owners"),
            broken: key("broken"),
            seq: key("seq"),
            sched: key("sched"),
            lease_sched: key("leasesched"),
            runs: key("runs"),
            run: key("run"),
            run_seq: key("runseq"),
            run_jobs: key("runjobs"),
            nodes: key("nodes"),
            beats: key("beats"),
            configs: key("configs"),
            orphans: key("orphans"),
            waiters: key("waiters"),
            wake: crate::store::wake::channel_name(prefix),
        }
    }

    /// Job `id`'s running instances.
    pub(super) fn instances(&self, id: &str) -> String {
        format!("{}inst:{id}", self.prefix)
    }

    /// Job `id`'s waiter ([`crate::store::InstanceSlots::wait_for_instance`]): a hash
    /// of its `owner` and the `max` its run claims under, expiring with the waiter.
    pub(super) fn waiter(&self, id: &str) -> String {
        format!("{}wait:{id}", self.prefix)
    }

    /// An alert claim ([`crate::store::Cluster::claim_alert`]): a string with an
    /// expiry, set only if absent.
    pub(super) fn alert_claim(&self, key: &str) -> String {
        format!("{}alert:{key}", self.prefix)
    }

    /// Job `id`'s run records (prune_runs.lua builds the same name).
    pub(super) fn job_runs(&self, id: &str) -> String {
        format!("{}runs:{id}", self.prefix)
    }

    /// Job `id`'s `success` run records, or those of its other outcomes: what the
    /// per-job history limits count (prune_runs.lua builds the same names).
    pub(super) fn job_class_runs(&self, id: &str, success: bool) -> String {
        let class = if success { "runok" } else { "runfail" };
        format!("{}{class}:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("kairos:");
        assert_eq!(keys.jobs, "kairos:jobs");
        assert_eq!(keys.due, "kairos:due");
        assert_eq!(
            keys.instances("order-cancel-7"),
            "kairos:inst:order-cancel-7"
        );
        // prune_runs.lua rebuilds this name from the prefix and the member.
        assert_eq!(keys.job_runs("a:b"), "kairos:runs:a:b");
        assert_eq!(keys.job_class_runs("a:b", true), "kairos:runok:a:b");
        assert_eq!(keys.job_class_runs("a:b", false), "kairos:runfail:a:b");
        let all = [
            &keys.jobs,
            &keys.revs,
            &keys.next,
            &keys.due,
            &keys.leases,
            &keys.owners,
            &keys.broken,
            &keys.seq,
            &keys.sched,
            &keys.lease_sched,
            &keys.runs,
            &keys.run,
            &keys.run_seq,
            &keys.run_jobs,
            &keys.nodes,
            &keys.beats,
            &keys.configs,
            &keys.orphans,
            &keys.waiters,
        ];
        let mut names: Vec<&String> = all.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.iter().all(|name| name.starts_with("kairos:")));
    }
}
