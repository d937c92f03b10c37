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

use chrono::{DateTime, Utc};

use super::{Scheduler, SchedulerError};
use crate::job::{Job, JobChanges};
use crate::trigger::tzdata::{self, TzDataChange, TzDataInfo};
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

impl Scheduler {
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
                let Some(next) = moved_next_run_time(&job, &change, now) else {
                    continue;
                };
                let changes = JobChanges {
                    next_run_time: Some(next),
                    ..JobChanges::default()
                };
                // At the revision read: a job changed meanwhile got its next run time
                // from that change, with the new rules already.
                match self
                    .modify_job_if(&job.id, changes, Some(job.revision))
                    .await
                {
                    Ok(_) => moved.push(job.id),
                    Err(error) => {
                        tracing::warn!(job_id = job.id, %error, "next run time not moved to the new zone rules");
                    }
                }
            }
        }
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
    change: &TzDataChange,
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
        || !change.affects(tz)
    {
        return None;
    }
    job.trigger
        .next_fire_time(None, now)
        .filter(|moved| *moved != next)
}
