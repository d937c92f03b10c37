//! Zone rules read again: a tzdata update moves the next run times it changes
//! (docs/semantics.md, "Zone rules").
//!
//! A stored next run time is an instant, computed with the rules in use then. When the
//! rules of a zone change (a country moved its DST dates: its file changed, or the
//! release did, which may change any zone), every scheduled job whose
//! trigger follows that zone's wall clock (cron, crontab, calendarinterval and their
//! combinations; not interval or date, which are instants) gets the next run time its
//! trigger gives now, as cron would fire by the new local time. Jobs whose zone did
//! not change, paused jobs, jobs due already and jobs waiting for a retry keep theirs.
//!
//! A restart does the same for rules that changed while the daemon was down: each
//! store records the rules its next run times follow ([`TzDataInfo::fingerprint`]),
//! and a start that finds other rules recomputes the zoned jobs of that store (all of
//! them: which zone files changed meanwhile is not known). Finding the same rules costs
//! one read per store, so a restart with a million pending jobs stays as fast as before.
//! A store with no record is recomputed too, but beside the running scheduler
//! ([`ZoneRulesRecord::Missing`]).

use chrono::{DateTime, Utc};

use super::{Scheduler, SchedulerError};
use crate::job::{Job, JobChanges};
use crate::store::NextRunMove;
use crate::trigger::tzdata::{self, TzDataInfo};
use crate::trigger::zone::Zone;

/// What [`Scheduler::reload_zone_rules`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRulesReload {
    /// The rules in use before.
    pub before: TzDataInfo,
    /// The rules in use now.
    pub after: TzDataInfo,
    /// The zones read before whose files changed (with a new release, any zone may
    /// have).
    pub changed_zones: Vec<String>,
    /// The jobs whose next run time moved.
    pub moved: Vec<String>,
}

/// Which stores [`Scheduler::check_zone_rules_at_start`] recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneRulesRecord {
    /// Those that recorded other rules than the ones in use: a tzdata update while the
    /// daemon was down. Worth holding the start for: their times are known wrong.
    Differing,
    /// Those that recorded none (written by an older kairos, or filled by a program
    /// of its own), and all when the rules' release is unknown: probably nothing
    /// moves, and reading every job can take seconds, so the daemon does it beside
    /// the running scheduler (a move is written only at the revision read).
    Missing,
    /// Both.
    Any,
}

/// What [`Scheduler::check_zone_rules_at_start`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRulesAtStart {
    /// The rules in use.
    pub rules: TzDataInfo,
    /// The stores whose next run times followed other rules (or unrecorded ones), and
    /// were recomputed.
    pub recomputed_stores: Vec<String>,
    /// The jobs whose next run time moved.
    pub moved: Vec<String>,
}

impl Scheduler {
    /// At start, before the scheduler runs: moves the next run times that the zone
    /// rules in use move, in each store whose recorded rules differ from them (or that
    /// recorded none, or when the rules' release is unknown), and records the rules in
    /// use. The daemon calls it at every start; a reload does the same through
    /// [`Scheduler::reload_zone_rules`].
    pub async fn check_zone_rules_at_start(
        &self,
        which: ZoneRulesRecord,
    ) -> Result<ZoneRulesAtStart, SchedulerError> {
        let rules = tzdata::info();
        let fingerprint = rules.fingerprint();
        let mut recomputed_stores = Vec::new();
        let mut moved = Vec::new();
        for (name, store) in &self.inner.stores {
            let recorded = store.zone_rules().await?;
            let stale = match (&recorded, &fingerprint) {
                (Some(recorded), Some(current)) if recorded == current => continue,
                (Some(_), Some(_)) => ZoneRulesRecord::Differing,
                _ => ZoneRulesRecord::Missing,
            };
            if which != ZoneRulesRecord::Any && which != stale {
                continue;
            }
            let now = self.inner.clock.now();
            recomputed_stores.push(name.clone());
            // In one batch: a store of 100,000 zoned jobs would take minutes at one
            // durable commit per job (docs/semantics.md, "Zone rules").
            let moves: Vec<NextRunMove> = store
                .get_jobs()
                .await?
                .into_iter()
                .filter_map(|job| {
                    let next_run_time = moved_next_run_time(&job, |_| true, now)?;
                    Some(NextRunMove {
                        job_id: job.id,
                        revision: job.revision,
                        next_run_time,
                    })
                })
                .collect();
            moved.extend(store.move_next_run_times(moves).await?);
            if let Some(fingerprint) = &fingerprint {
                store.record_zone_rules(fingerprint).await?;
            }
        }
        let report = ZoneRulesAtStart {
            rules,
            recomputed_stores,
            moved,
        };
        tracing::info!(
            tzdata = %report.rules,
            recomputed_stores = ?report.recomputed_stores,
            moved = report.moved.len(),
            checked = ?which,
            "zone rules checked at start"
        );
        Ok(report)
    }

    /// Gives `job` the next run time `next`, at the revision read: a job changed
    /// meanwhile got its next run time from that change, with the new rules already.
    async fn move_next_run_time(&self, job: &Job, next: DateTime<Utc>) -> bool {
        let changes = JobChanges {
            next_run_time: Some(next),
            ..JobChanges::default()
        };
        match self
            .modify_job_if(&job.id, changes, Some(job.revision))
            .await
        {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(job_id = job.id, %error, "next run time not moved to the new zone rules");
                false
            }
        }
    }

    /// Records the rules in use in every store, after a reload moved what they move.
    async fn record_zone_rules(&self, rules: &TzDataInfo) {
        let Some(fingerprint) = rules.fingerprint() else {
            return;
        };
        for (name, store) in &self.inner.stores {
            if let Err(error) = store.record_zone_rules(&fingerprint).await {
                tracing::warn!(jobstore = name, %error, "the zone rules in use could not be recorded; the next start recomputes the next run times");
            }
        }
    }

    /// Reads the zone rules again (the system's tz database, or the compiled-in rules:
    /// [`crate::trigger::tzdata`]) and moves the next run times their change moves.
    /// The daemon calls it at every reload; the rules are the process's, so a second
    /// scheduler in the process sees them too (and moves its jobs at its own call).
    pub async fn reload_zone_rules(&self) -> Result<ZoneRulesReload, SchedulerError> {
        let change = tzdata::reload();
        let mut moved = Vec::new();
        if !change.is_empty() {
            let now = self.inner.clock.now();
            for job in self.get_jobs().await? {
                let Some(next) = moved_next_run_time(&job, |tz| change.affects(tz), now) else {
                    continue;
                };
                if self.move_next_run_time(&job, next).await {
                    moved.push(job.id);
                }
            }
        }
        self.record_zone_rules(&change.after).await;
        let report = ZoneRulesReload {
            changed_zones: change
                .changed
                .iter()
                .map(|tz| tz.name().to_owned())
                .collect(),
            before: change.before,
            after: change.after,
            moved,
        };
        tracing::info!(
            tzdata = %report.after,
            changed_zones = ?report.changed_zones,
            moved = ?report.moved,
            "zone rules read"
        );
        Ok(report)
    }
}

/// The next run time `job` gets under the new rules, if it moves.
fn moved_next_run_time(
    job: &Job,
    affected: impl Fn(chrono_tz::Tz) -> bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let next = job.next_run_time?;
    let Zone::Named(tz) = job.trigger.timezone() else {
        return None;
    };
    let follows_wall_clock = !matches!(job.trigger.kind(), "interval" | "date");
    if job.paused
        || next <= now
        || job.retry.pending.is_some()
        || !follows_wall_clock
        || !affected(tz)
    {
        return None;
    }
    job.trigger
        .next_fire_time(None, now)
        .filter(|moved| *moved != next)
}
