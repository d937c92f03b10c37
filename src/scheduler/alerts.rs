//! The scheduler's alerts: which are raised and when, sent once per cluster.
//!
//! A task of its own listens to the scheduler's events, as any listener does, so the
//! run lifecycle knows nothing of alerts: a run that ends in `error` or `timeout` with
//! no attempt left raises `failed`, one that timed out raises `timeout`, run times past
//! their grace time raise `missed`. The same task is the dead-man's switch: about once
//! a minute on the scheduler's clock (and at once when the scheduler starts) it looks
//! at every job with `expect_success_within` and raises `overdue` for a job whose last
//! success (or, if none, the start of its watch) is older than that, once per stretch
//! without success, whatever the cause.
//!
//! # Ground rules
//! - An alert is raised once per cluster: before sending, this node claims the alert's
//!   key in the job's store ([`crate::store::Cluster::claim_alert`]); a node that loses the
//!   claim sends nothing. A store that cannot be reached cannot tell, so the alert is sent
//!   anyway (a failure is never silent; other nodes may then send it too).
//! - Nothing here holds up the scheduler: events are read from the broadcast channel
//!   (if this task falls behind it loses events and says so), and webhooks have
//!   queues of their own ([`Webhooks::send`] never waits).
//! - Raised alerts are events ([`Event::Alert`]), so they are log lines, metrics and
//!   `GET /events` entries like every other event.
//!
//! See `docs/alerts.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Event, Inner};
use crate::alert::webhook::DeliveryReport;
use crate::alert::{Alert, AlertKind, AlertSettings, DeliveryOutcome, Webhooks};
use crate::history::{RunOutcome, RunRecord};
use crate::job::SuccessWatch;
use crate::store::JobStore;

/// How many overdue checks pass between two full reads of the jobs (to find the
/// watched ones other nodes added); changes made through this scheduler are read at
/// the next check.
const CHECKS_PER_SCAN: u32 = 5;

/// Raises alerts from `events` and the dead-man's switch until the scheduler shuts
/// down.
pub(crate) async fn run(
    inner: Arc<Inner>,
    settings: AlertSettings,
    mut events: broadcast::Receiver<Event>,
) {
    let weak = Arc::downgrade(&inner);
    let report: DeliveryReport = Arc::new(move |delivery: crate::alert::Delivery| {
        let Some(inner) = weak.upgrade() else { return };
        inner.emit(match delivery.outcome {
            DeliveryOutcome::Delivered => Event::AlertDelivered {
                alert: delivery.alert,
                job_id: delivery.job_id,
                webhook: delivery.webhook,
                attempts: delivery.attempts,
            },
            DeliveryOutcome::Failed(reason) => Event::AlertUndelivered {
                alert: delivery.alert,
                job_id: delivery.job_id,
                webhook: delivery.webhook,
                attempts: delivery.attempts,
                reason,
            },
            DeliveryOutcome::Dropped => Event::AlertUndelivered {
                alert: delivery.alert,
                job_id: delivery.job_id,
                webhook: delivery.webhook,
                attempts: 0,
                reason: "its queue of alerts is full (the webhook has been failing)".to_owned(),
            },
        });
    });
    let webhooks = match Webhooks::start(&settings.webhooks, report) {
        Ok(webhooks) => webhooks,
        Err(error) => {
            tracing::error!(%error, "alert webhooks could not be set up; alerts are only logged");
            match Webhooks::start(&[], Arc::new(|_| {})) {
                Ok(none) => none,
                Err(_) => return,
            }
        }
    };
    let every = TimeDelta::from_std(settings.check_every.max(Duration::from_secs(1)))
        .unwrap_or(TimeDelta::MAX);
    let mut alerter = Alerter {
        inner: Arc::clone(&inner),
        settings,
        webhooks,
        watched: HashMap::new(),
        checks_until_scan: 0,
    };
    let mut next_check = inner.clock.now();
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(Event::SchedulerShutdown) | Err(RecvError::Closed) => return,
                Ok(event) => alerter.on_event(event).await,
                Err(RecvError::Lagged(missed)) => tracing::error!(
                    missed,
                    "alerts fell behind the scheduler's events; alerts among the missed events are lost"
                ),
            },
            () = inner.clock.sleep_until(next_check) => {
                let now = inner.clock.now();
                if now >= next_check {
                    alerter.check_overdue(now).await;
                    next_check = now.checked_add_signed(every).unwrap_or(DateTime::<Utc>::MAX_UTC);
                }
            }
        }
    }
}

/// What the dead-man's switch knows of one watched job.
#[derive(Debug)]
struct Watched {
    /// The store that holds it.
    store: String,
    watch: SuccessWatch,
    /// The job's state when last read (`paused`, `failed`, …), for the message.
    state: &'static str,
    /// Its last success as last read; kept when the store cannot be reached.
    last_success: Option<DateTime<Utc>>,
    /// The deadline this node raised `overdue` for (or saw claimed by another node).
    alerted: Option<DateTime<Utc>>,
}

struct Alerter {
    inner: Arc<Inner>,
    settings: AlertSettings,
    webhooks: Webhooks,
    watched: HashMap<String, Watched>,
    /// Checks left until the next full read of the jobs; 0: read them at the next.
    checks_until_scan: u32,
}

impl Alerter {
    async fn on_event(&mut self, event: Event) {
        match event {
            Event::JobError { run } => self.on_failed_run(run).await,
            Event::JobMissed {
                job_id,
                scheduled_time,
                count,
            } => {
                let message = format!(
                    "{count} run time(s) of job {job_id:?} from {scheduled_time} were not run: \
                     older than the job's misfire_grace_time when the scheduler took them"
                );
                let store = self.store_of(&job_id).await;
                self.raise(
                    AlertKind::Missed,
                    job_id,
                    scheduled_time,
                    None,
                    message,
                    store,
                    self.settings.claim_ttl,
                )
                .await;
            }
            // Read again at the next check.
            Event::JobAdded { .. } | Event::JobModified { .. } | Event::JobRemoved { .. } => {
                self.checks_until_scan = 0;
            }
            _ => {}
        }
    }

    /// `timeout` for a run that timed out, `failed` for one with no attempt left.
    async fn on_failed_run(&mut self, run: RunRecord) {
        if !matches!(run.outcome, RunOutcome::Error | RunOutcome::Timeout) {
            return;
        }
        let found = self.inner.find_job(&run.job_id).await;
        let (store, max_attempts, one_off) = match &found {
            Ok((store, job)) => (
                Some(store.clone()),
                Some(job.max_attempts()),
                job.trigger
                    .next_fire_time(Some(run.scheduled_time), run.scheduled_time)
                    .is_none(),
            ),
            // Removed meanwhile (nothing more will run), or the store is out of reach:
            // count the run as the last, rather than stay silent.
            Err(_) => (None, None, false),
        };
        let error = run
            .error
            .clone()
            .unwrap_or_else(|| run.outcome.as_str().to_owned());
        if run.outcome == RunOutcome::Timeout {
            let message = format!(
                "run of job {:?} scheduled for {} (attempt {}) timed out: {error}",
                run.job_id, run.scheduled_time, run.attempt
            );
            self.raise(
                AlertKind::Timeout,
                run.job_id.clone(),
                run.scheduled_time,
                Some(run.attempt),
                message,
                store.clone(),
                self.settings.claim_ttl,
            )
            .await;
        }
        // A run that never started is not retried (`record.rs`).
        let exhausted =
            run.started_at.is_none() || max_attempts.is_none_or(|max| run.attempt >= max);
        if !exhausted {
            return;
        }
        let attempts = max_attempts.map_or_else(|| run.attempt.to_string(), |max| max.to_string());
        let what = if one_off {
            "one-off job kept as failed"
        } else {
            "the job goes on with its schedule"
        };
        let message = format!(
            "run of job {:?} scheduled for {} failed with no attempt left (attempt {} of {attempts}; {what}): {error}",
            run.job_id, run.scheduled_time, run.attempt
        );
        self.raise(
            AlertKind::Failed,
            run.job_id,
            run.scheduled_time,
            Some(run.attempt),
            message,
            store,
            self.settings.claim_ttl,
        )
        .await;
    }

    /// The name of the store that holds `job_id`, if it can be found.
    async fn store_of(&self, job_id: &str) -> Option<String> {
        self.inner
            .find_job(job_id)
            .await
            .ok()
            .map(|(store, _)| store)
    }

    /// The dead-man's switch: raises `overdue` for each watched job past its deadline.
    async fn check_overdue(&mut self, now: DateTime<Utc>) {
        if self.checks_until_scan == 0 {
            self.scan().await;
            self.checks_until_scan = CHECKS_PER_SCAN;
        }
        self.checks_until_scan -= 1;
        let ids: Vec<String> = self.watched.keys().cloned().collect();
        for id in ids {
            let Some(watched) = self.watched.get(&id) else {
                continue;
            };
            let Some(store) = self.inner.stores.get(&watched.store).cloned() else {
                continue;
            };
            let last_success = match store.last_success(&id).await {
                Ok(last) => last,
                Err(error) => {
                    tracing::warn!(job_id = id, %error, "cannot read the job's last success; judging from what was read before");
                    watched.last_success
                }
            };
            let Some(watched) = self.watched.get_mut(&id) else {
                continue;
            };
            watched.last_success = last_success;
            let deadline = watched.watch.deadline(last_success);
            if now < deadline || watched.alerted == Some(deadline) {
                continue;
            }
            watched.alerted = Some(deadline);
            let within = watched.watch.within;
            let since = match last_success {
                Some(success) if success >= watched.watch.since => {
                    format!("its last success at {success}")
                }
                _ => format!(
                    "its watch began at {} (no success since)",
                    watched.watch.since
                ),
            };
            let state = match watched.state {
                "scheduled" => String::new(),
                state => format!("; the job is {state}"),
            };
            let message = format!(
                "job {id:?} has not succeeded within {} (expect_success_within) since {since}{state}",
                humantime::format_duration(within)
            );
            let ttl = self.settings.claim_ttl.max(within.saturating_mul(2));
            let store = Some(watched.store.clone());
            self.raise(AlertKind::Overdue, id, deadline, None, message, store, ttl)
                .await;
        }
    }

    /// Reads every job to know which ones are watched, keeping what is known of
    /// those still watched the same way. A store that cannot be read keeps its jobs.
    async fn scan(&mut self) {
        let mut watched = HashMap::new();
        for (name, store) in &self.inner.stores {
            match store.get_jobs().await {
                Ok(jobs) => {
                    for job in jobs {
                        let Some(watch) = job.expect_success.clone() else {
                            continue;
                        };
                        let known = self
                            .watched
                            .remove(&job.id)
                            .filter(|known| known.watch == watch);
                        watched.insert(
                            job.id.clone(),
                            Watched {
                                store: name.clone(),
                                state: job.state(),
                                last_success: known.as_ref().and_then(|known| known.last_success),
                                alerted: known.and_then(|known| known.alerted),
                                watch,
                            },
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(jobstore = name, %error, "cannot read the jobs to check expect_success_within; using the ones read before");
                    let kept: Vec<String> = self
                        .watched
                        .iter()
                        .filter(|(_, known)| &known.store == name)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in kept {
                        if let Some(known) = self.watched.remove(&id) {
                            watched.insert(id, known);
                        }
                    }
                }
            }
        }
        self.watched = watched;
    }

    /// Claims the alert in the store (once per cluster), then announces and sends it.
    #[allow(clippy::too_many_arguments)]
    async fn raise(
        &self,
        event: AlertKind,
        job_id: String,
        scheduled_time: DateTime<Utc>,
        attempt: Option<u32>,
        message: String,
        store: Option<String>,
        ttl: Duration,
    ) {
        let now = self.inner.clock.now();
        let alert = Alert {
            event,
            job_id,
            scheduled_time,
            attempt,
            message,
            node_id: self.inner.id.clone(),
            at: now,
        };
        let store: Option<&Arc<dyn JobStore>> = store
            .as_deref()
            .and_then(|name| self.inner.stores.get(name))
            .or_else(|| self.inner.stores.get(&self.inner.defaults.jobstore))
            .or_else(|| self.inner.stores.values().next());
        if let Some(store) = store {
            match store.claim_alert(&alert.claim_key(), now, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        alert = event.as_str(),
                        job_id = alert.job_id,
                        "alert already raised by another node"
                    );
                    return;
                }
                Err(error) => tracing::warn!(
                    alert = event.as_str(),
                    job_id = alert.job_id,
                    %error,
                    "cannot claim the alert in the store; sending it anyway (another node may send it too)"
                ),
            }
        }
        self.webhooks.send(&alert);
        self.inner.emit(Event::Alert { alert });
    }
}
