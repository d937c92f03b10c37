//! Triggers: when a job fires.
//!
//! A [`TriggerSpec`] is what a user writes (config, API, `kairos next`); a [`Trigger`] is
//! its checked, compiled form. Triggers are pure: [`Trigger::next_fire_time`] depends
//! only on its arguments, never on the clock, so the scheduler and the tests drive it
//! with whatever time they like.
//!
//! | type | fires |
//! | --- | --- |
//! | `date` | once, at `run_date` (or `delay` after it was created) |
//! | `interval` | every fixed elapsed duration from `start_date`; DST does not move it |
//! | `cron` | when every field matches, with APScheduler 3.x's field syntax and defaults |
//! | `crontab` | on a 5-field crontab line, Vixie cron semantics |
//! | `calendarinterval` | every N years/months/weeks/days at a fixed wall-clock time |
//! | `and` / `or` | when all / any of several triggers fire |
//!
//! # Ground rules
//! - Fire times strictly increase: the next fire time is always later than the
//!   previous one, whatever the zone does.
//! - Calendar fields are matched on civil time in the trigger's zone and turned into an
//!   instant only at the end (`civil.rs`): a wall-clock time inside a spring-forward gap
//!   fires at the first instant after the gap; one inside a fall-back fold fires in the
//!   first pass only, unless the hour field matches all 24 hours.
//! - Jitter is not part of the schedule: [`Trigger::jitter`] tells the scheduler how
//!   much it may delay a run ([`jitter::delay_run`]), and the delayed time never feeds
//!   the next computation.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use kairos::trigger::{Trigger, TriggerContext, TriggerSpec};
//!
//! let spec: TriggerSpec = serde_json::from_str(
//!     r#"{"type": "cron", "hour": 3, "timezone": "Asia/Shanghai"}"#,
//! ).unwrap();
//! let now: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
//! let trigger = Trigger::new(spec, &TriggerContext::new(now)).unwrap();
//! let next = trigger.next_fire_time(None, now).unwrap();
//! assert_eq!(next.to_rfc3339(), "2024-01-01T19:00:00+00:00"); // 03:00 in Shanghai
//! ```

pub(crate) mod calendar_interval;
pub(crate) mod civil;
mod combining;
pub use combining::{Budget, EvaluationError, EVALUATION_BUDGET, MAX_NESTING, MAX_PARTS};
pub(crate) mod cron;
pub(crate) mod crontab;
mod date;
pub mod datetime;
mod interval;
pub mod jitter;
pub(crate) mod spec;
pub mod tzdata;
mod window;
pub mod words;
pub mod zone;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use spec::{
    CalendarIntervalSpec, CombiningSpec, CronSpec, CrontabSpec, DateSpec, IntervalSpec, TriggerSpec,
};
use zone::PackedZone;
pub use zone::Zone;

/// What a trigger needs from its surroundings when it is built: the zone for triggers
/// that name none, and "now" for values given relative to it (`delay`, an interval's
/// default start).
#[derive(Clone, Copy, Debug)]
pub struct TriggerContext {
    /// The zone of triggers that give no `timezone` (the scheduler's zone).
    pub timezone: Zone,
    /// The instant relative values are resolved against.
    pub now: DateTime<Utc>,
}

impl TriggerContext {
    /// A context with UTC as the default zone.
    pub fn new(now: DateTime<Utc>) -> TriggerContext {
        TriggerContext {
            timezone: zone::UTC,
            now,
        }
    }

    /// The same context with another default zone.
    pub fn with_timezone(self, timezone: Zone) -> TriggerContext {
        TriggerContext { timezone, ..self }
    }
}

/// What kind of mistake a [`TriggerError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerErrorKind {
    /// The text could not be read at all.
    Syntax,
    /// A number, step or date is outside what the field allows.
    OutOfRange,
    /// A month, weekday or time zone name is not known.
    UnknownName,
    /// A field that this trigger type does not have.
    UnknownField,
    /// Values that cannot go together, or a required one that is missing.
    Conflict,
}

/// A trigger that cannot be built: names the field and says why.
///
/// Displays as `field: reason`, e.g. `hour: 25 is out of range 0-23`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TriggerError {
    field: String,
    reason: String,
    kind: TriggerErrorKind,
}

impl TriggerError {
    pub(crate) fn new(
        kind: TriggerErrorKind,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> TriggerError {
        TriggerError {
            field: field.into(),
            reason: reason.into(),
            kind,
        }
    }

    pub(crate) fn syntax(field: impl Into<String>, reason: impl Into<String>) -> TriggerError {
        TriggerError::new(TriggerErrorKind::Syntax, field, reason)
    }

    pub(crate) fn out_of_range(
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> TriggerError {
        TriggerError::new(TriggerErrorKind::OutOfRange, field, reason)
    }

    pub(crate) fn unknown_name(
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> TriggerError {
        TriggerError::new(TriggerErrorKind::UnknownName, field, reason)
    }

    pub(crate) fn conflict(field: impl Into<String>, reason: impl Into<String>) -> TriggerError {
        TriggerError::new(TriggerErrorKind::Conflict, field, reason)
    }

    /// The field at fault: `hour`, `start_date`, `crontab`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The kind of mistake.
    pub fn kind(&self) -> TriggerErrorKind {
        self.kind
    }

    /// The same error, reported under a parent field (`triggers[1].hour`).
    pub(crate) fn within(self, parent: &str) -> TriggerError {
        TriggerError {
            field: format!("{parent}.{}", self.field),
            ..self
        }
    }
}

/// A checked, compiled trigger.
///
/// Serializes as its resolved [`TriggerSpec`]: the zone, an interval's start and a
/// delayed date's run date are written out, so a stored trigger means the same thing
/// when it is read back on another machine or after a restart.
///
/// A `Trigger` is cheap to clone (as every copy of a job does): a `date` trigger is kept
/// inline as its instant and zone, every other one is a shared handle.
#[derive(Clone, Debug)]
pub struct Trigger {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// A `date` trigger is all in its instant and zone, so it is kept without an
    /// allocation, its zone packed, and its spec is written out when asked for: a
    /// million pending one-off jobs each hold one (BENCHMARKS.md, memory per pending job).
    Date {
        run_date: DateTime<Utc>,
        zone: PackedZone,
    },
    Shared(Arc<TriggerInner>),
}

#[derive(Debug)]
struct TriggerInner {
    spec: TriggerSpec,
    zone: Zone,
    jitter: Option<Duration>,
    schedule: Schedule,
}

#[derive(Debug)]
enum Schedule {
    /// A date written as a civil time, kept with its text (see `date.rs`).
    Date(DateTime<Utc>),
    Interval(interval::IntervalTrigger),
    Cron(Box<cron::CronTrigger>),
    CalendarInterval(Box<calendar_interval::CalendarIntervalTrigger>),
    And(Vec<Trigger>),
    Or(Vec<Trigger>),
}

impl Trigger {
    fn from_parts(
        spec: TriggerSpec,
        zone: Zone,
        jitter: Option<Duration>,
        schedule: Schedule,
    ) -> Trigger {
        Trigger {
            repr: Repr::Shared(Arc::new(TriggerInner {
                spec,
                zone,
                jitter,
                schedule,
            })),
        }
    }

    /// A `date` trigger firing once at `run_date` (already truncated to microseconds).
    fn date(run_date: DateTime<Utc>, zone: Zone) -> Trigger {
        Trigger {
            repr: Repr::Date {
                run_date,
                zone: PackedZone::new(zone),
            },
        }
    }
}

/// The last instant a trigger fires at: the end of the year 9999, the last that
/// RFC 3339 (the API's times, the stores' text) and APScheduler's `datetime` can
/// write. A schedule is over after it (docs/semantics.md, "Triggers").
pub(crate) const LAST_FIRE_TIME: DateTime<Utc> =
    match DateTime::from_timestamp(253_402_300_799, 999_999_000) {
        Some(last) => last,
        None => DateTime::<Utc>::MAX_UTC,
    };

/// Whether `time` is a fire time a trigger may give: not after [`LAST_FIRE_TIME`].
fn writable(time: &DateTime<Utc>) -> bool {
    *time <= LAST_FIRE_TIME
}

impl Trigger {
    /// Checks and compiles `spec`; relative and missing values are resolved with `context`.
    pub fn new(spec: TriggerSpec, context: &TriggerContext) -> Result<Trigger, TriggerError> {
        match spec {
            TriggerSpec::Date(spec) => date::build(spec, context),
            TriggerSpec::Interval(spec) => interval::build(*spec, context),
            TriggerSpec::Cron(spec) => cron::build(*spec, context),
            TriggerSpec::Crontab(spec) => crontab::build(*spec, context),
            TriggerSpec::CalendarInterval(spec) => calendar_interval::build(*spec, context),
            TriggerSpec::And(spec) => combining::build(spec, context, true),
            TriggerSpec::Or(spec) => combining::build(spec, context, false),
        }
    }

    /// The next time to fire after `previous_fire_time`, or the first one at or after
    /// `now` when the job has not fired yet; `None` when the schedule is over.
    ///
    /// As in APScheduler, a `date` trigger's only fire time is returned even when it
    /// lies before `now`: a one-off job whose moment passed while the scheduler was
    /// down still runs, subject to the job's misfire grace time.
    ///
    /// A trigger whose fire time cannot be computed within its [`Budget`] (see
    /// [`Trigger::try_next_fire_time`]) has none here either.
    pub fn next_fire_time(
        &self,
        previous_fire_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.try_next_fire_time(previous_fire_time, now, &mut Budget::new(None))
            .ok()
            .flatten()
    }

    /// [`Trigger::next_fire_time`], telling a schedule that is over (`Ok(None)`) from
    /// one whose computation ran out of `budget` (combinations only).
    pub fn try_next_fire_time(
        &self,
        previous_fire_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        budget: &mut Budget,
    ) -> Result<Option<DateTime<Utc>>, EvaluationError> {
        let run_date = match &self.repr {
            Repr::Date { run_date, .. } => Some(*run_date),
            Repr::Shared(inner) => match inner.schedule {
                Schedule::Date(run_date) => Some(run_date),
                _ => None,
            },
        };
        match (run_date, previous_fire_time) {
            // A date trigger fires once: after any previous fire time it is finished.
            (Some(run_date), previous) => {
                Ok(previous.is_none().then_some(run_date).filter(writable))
            }
            (None, Some(previous)) => match previous.checked_add_signed(TimeDelta::microseconds(1))
            {
                Some(after) => self.first_fire_within(after, budget),
                None => Ok(None),
            },
            (None, None) => self.first_fire_within(datetime::truncate_to_micros(now), budget),
        }
    }

    /// Up to `count` fire times from `from` on, each within a fresh evaluation budget
    /// and all before `deadline`: what the API and `kairos next` compute for input
    /// they were given.
    pub fn try_fire_times(
        &self,
        from: DateTime<Utc>,
        count: usize,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<DateTime<Utc>>, EvaluationError> {
        let budget = Budget::new(deadline);
        let mut times = Vec::with_capacity(count.min(1024));
        let mut previous = None;
        while times.len() < count {
            let next = match previous {
                None => self.try_next_fire_time(None, from, &mut budget.renewed())?,
                Some(previous) => {
                    self.try_next_fire_time(Some(previous), previous, &mut budget.renewed())?
                }
            };
            match next {
                Some(next) => {
                    times.push(next);
                    previous = Some(next);
                }
                None => break,
            }
        }
        Ok(times)
    }

    /// Fire times from `from` on (the first at or after it), as `kairos next` lists them.
    pub fn fire_times(&self, from: DateTime<Utc>) -> FireTimes<'_> {
        FireTimes {
            trigger: self,
            previous: None,
            from,
            done: false,
        }
    }

    /// The first fire time at or after `instant`: the shared primitive of every
    /// trigger, also what combinations are built from.
    pub(crate) fn first_fire_at_or_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_fire_within(instant, &mut Budget::new(None))
            .ok()
            .flatten()
    }

    /// [`Trigger::first_fire_at_or_after`], charging `budget` one evaluation.
    fn first_fire_within(
        &self,
        instant: DateTime<Utc>,
        budget: &mut Budget,
    ) -> Result<Option<DateTime<Utc>>, EvaluationError> {
        let inner = match &self.repr {
            Repr::Date { run_date, .. } => return Ok((*run_date >= instant).then_some(*run_date)),
            Repr::Shared(inner) => inner,
        };
        budget.charge()?;
        let first = match &inner.schedule {
            Schedule::Date(run_date) => (*run_date >= instant).then_some(*run_date),
            Schedule::Interval(trigger) => trigger.first_fire_at_or_after(instant),
            Schedule::Cron(trigger) => trigger.first_fire_at_or_after(instant),
            Schedule::CalendarInterval(trigger) => trigger.first_fire_at_or_after(instant),
            Schedule::And(triggers) => {
                return combining::all_agree_at_or_after(triggers, instant, budget)
            }
            Schedule::Or(triggers) => return combining::any_at_or_after(triggers, instant, budget),
        };
        Ok(first.filter(writable))
    }

    /// The zone the trigger computes and shows its times in.
    pub fn timezone(&self) -> Zone {
        match &self.repr {
            Repr::Date { zone, .. } => zone.unpack(),
            Repr::Shared(inner) => inner.zone,
        }
    }

    /// How much a run may be delayed at random (see [`jitter::delay_run`]).
    pub fn jitter(&self) -> Option<Duration> {
        match &self.repr {
            Repr::Date { .. } => None,
            Repr::Shared(inner) => inner.jitter,
        }
    }

    /// The resolved specification this trigger was built from. A `date` trigger given as
    /// an instant (with an offset, or as a `delay`) has its date written out from the
    /// instant, in its zone (`2026-05-01T03:00:00+08:00`); one written as a civil time
    /// keeps its text.
    pub fn spec(&self) -> Cow<'_, TriggerSpec> {
        match &self.repr {
            Repr::Date { run_date, zone } => {
                let zone = zone.unpack();
                Cow::Owned(TriggerSpec::Date(DateSpec {
                    run_date: Some(datetime::format_instant(*run_date, &zone)),
                    delay: None,
                    timezone: Some(zone.name()),
                }))
            }
            Repr::Shared(inner) => Cow::Borrowed(&inner.spec),
        }
    }

    /// The trigger type's name: `date`, `interval`, `cron`, `crontab`, `calendarinterval`,
    /// `and` or `or`.
    pub fn kind(&self) -> &'static str {
        match &self.repr {
            Repr::Date { .. } => "date",
            Repr::Shared(inner) => inner.spec.kind(),
        }
    }
}

impl PartialEq for Trigger {
    /// Two triggers are equal when their resolved specifications are.
    fn eq(&self, other: &Trigger) -> bool {
        match (&self.repr, &other.repr) {
            (
                Repr::Date { run_date, zone },
                Repr::Date {
                    run_date: other_date,
                    zone: other_zone,
                },
            ) => run_date == other_date && zone == other_zone,
            (Repr::Shared(inner), Repr::Shared(other)) => inner.spec == other.spec,
            _ => false,
        }
    }
}

impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Trigger {
    /// Reads a specification and builds it against UTC and the current time; stored
    /// triggers are resolved, so neither matters for them.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Trigger, D::Error> {
        let spec = TriggerSpec::deserialize(deserializer)?;
        Trigger::new(spec, &TriggerContext::new(Utc::now())).map_err(serde::de::Error::custom)
    }
}

/// The fire times of a trigger from some instant on; see [`Trigger::fire_times`].
#[derive(Clone, Debug)]
pub struct FireTimes<'a> {
    trigger: &'a Trigger,
    previous: Option<DateTime<Utc>>,
    from: DateTime<Utc>,
    done: bool,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        if self.done {
            return None;
        }
        let next = match self.previous {
            None => self.trigger.next_fire_time(None, self.from),
            Some(previous) => self.trigger.next_fire_time(Some(previous), previous),
        };
        self.previous = next;
        self.done = next.is_none();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(spec: serde_json::Value, now: DateTime<Utc>) -> Trigger {
        let spec: TriggerSpec = serde_json::from_value(spec).expect("a trigger spec");
        Trigger::new(spec, &TriggerContext::new(now)).expect("a trigger")
    }

    /// The API wrote `+14260-04-08T04:40:40Z` for an interval of 6,116 years, which is
    /// no RFC 3339 time: a schedule ends at the year 9999 instead (as a date trigger's
    /// run date already must be before the year 10000).
    #[test]
    fn no_trigger_fires_after_the_year_9999() {
        let now = DateTime::from_timestamp(1_796_578_000, 0).expect("an instant");
        let interval = trigger(
            serde_json::json!({"type": "interval", "seconds": 193_023_408_715_u64}),
            now,
        );
        let times = interval.try_fire_times(now, 10, None).expect("fire times");
        assert_eq!(times.len(), 1, "{times:?}");
        assert!(times.iter().all(|time| *time <= LAST_FIRE_TIME));
        let calendar = trigger(
            serde_json::json!({"type": "calendarinterval", "years": 753_231}),
            now,
        );
        // Its first step (from today's midnight, passed) lands in the year 755257.
        let times = calendar.try_fire_times(now, 3, None).expect("fire times");
        assert!(times.is_empty(), "{times:?}");
        let either = trigger(
            serde_json::json!({"type": "or", "triggers": [
                {"type": "interval", "seconds": 193_023_408_715_u64},
                {"type": "calendarinterval", "years": 753_231}]}),
            now,
        );
        assert_eq!(
            either
                .try_fire_times(now, 10, None)
                .map(|times| times.len()),
            Ok(1)
        );
        // The last writable instant itself still fires.
        let last = trigger(
            serde_json::json!({"type": "date", "run_date": "9999-12-31T23:59:59Z"}),
            now,
        );
        assert!(last.next_fire_time(None, now).is_some());
    }
}
