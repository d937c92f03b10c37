//! `and` / `or`: triggers built from other triggers, as APScheduler's `AndTrigger` and
//! `OrTrigger`.
//!
//! Both work on "the first fire time at or after an instant" of their parts, so a part
//! never sees another part's previous fire time (APScheduler's `OrTrigger` passes it on,
//! which stops an interval or date part from ever firing again).
//!
//! An `and` trigger searches for an instant every part agrees on by repeatedly jumping
//! to the latest candidate. Parts that rarely or never agree (two intervals with
//! co-prime periods) would make that search long, and nesting multiplies it: an `and`
//! of `and`s runs the inner search once per outer jump. So every computation of one
//! fire time draws on one [`Budget`] of part evaluations, shared by all nesting levels
//! ([`EVALUATION_BUDGET`] by default), and combinations nest at most
//! [`MAX_NESTING`] deep with at most [`MAX_PARTS`] triggers in all. A computation
//! that runs out fails with [`EvaluationError`] rather than taking minutes.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::datetime::truncate_to_micros;
use super::{CombiningSpec, Schedule, Trigger, TriggerContext, TriggerError, TriggerSpec};

/// How many candidate instants an `and` trigger tries before it counts as finished.
pub(crate) const AGREEMENT_ROUNDS: usize = 100_000;

/// How many part evaluations one fire time may take, across all nesting levels.
pub const EVALUATION_BUDGET: u32 = 50_000;

/// How deep `and`/`or` triggers may nest (an `or` of `and`s is 2).
pub const MAX_NESTING: usize = 3;

/// How many triggers one combination may hold in all, at every level.
pub const MAX_PARTS: usize = 64;

/// Why a fire time could not be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    /// The parts took more than [`EVALUATION_BUDGET`] evaluations.
    #[error(
        "the trigger needs more than {EVALUATION_BUDGET} evaluations of its parts for one \
         fire time (its and/or parts rarely or never agree)"
    )]
    OverBudget,
    /// The computation ran past its deadline.
    #[error("computing the trigger's fire times took longer than allowed")]
    Deadline,
}

/// What one fire-time computation may still spend: part evaluations and, for
/// computations on behalf of a request, wall-clock time.
#[derive(Debug)]
pub struct Budget {
    remaining: u32,
    deadline: Option<Instant>,
}

impl Budget {
    /// [`EVALUATION_BUDGET`] evaluations, and until `deadline` if there is one.
    pub fn new(deadline: Option<Instant>) -> Budget {
        Budget {
            remaining: EVALUATION_BUDGET,
            deadline,
        }
    }

    /// Spends one evaluation.
    pub(crate) fn charge(&mut self) -> Result<(), EvaluationError> {
        self.remaining = self
            .remaining
            .checked_sub(1)
            .ok_or(EvaluationError::OverBudget)?;
        // The clock is read every 256 evaluations: cheap, and fine-grained enough.
        if self.remaining % 256 == 0 {
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    return Err(EvaluationError::Deadline);
                }
            }
        }
        Ok(())
    }

    /// The same deadline with a full evaluation budget: the next fire time's.
    pub(crate) fn renewed(&self) -> Budget {
        Budget::new(self.deadline)
    }
}

/// How deep `spec` nests combinations, and how many triggers it holds in all.
fn shape(spec: &TriggerSpec) -> (usize, usize) {
    match spec {
        TriggerSpec::And(combining) | TriggerSpec::Or(combining) => combining
            .triggers
            .iter()
            .map(shape)
            .fold((1, 1), |(depth, parts), (part_depth, part_parts)| {
                (depth.max(part_depth + 1), parts.saturating_add(part_parts))
            }),
        _ => (0, 1),
    }
}

pub(crate) fn build(
    spec: CombiningSpec,
    context: &TriggerContext,
    all: bool,
) -> Result<Trigger, TriggerError> {
    let kind = if all { "and" } else { "or" };
    let (depth, parts) = shape(&TriggerSpec::And(spec.clone()));
    if depth > MAX_NESTING {
        return Err(TriggerError::conflict(
            "triggers",
            format!("and/or triggers nest {depth} deep; at most {MAX_NESTING} are allowed"),
        ));
    }
    if parts > MAX_PARTS + 1 {
        return Err(TriggerError::conflict(
            "triggers",
            format!(
                "an {kind} trigger holds {} triggers in all; at most {MAX_PARTS} are allowed",
                parts - 1
            ),
        ));
    }
    if spec.triggers.is_empty() {
        return Err(TriggerError::conflict(
            "triggers",
            format!("an {kind} trigger needs at least one trigger to combine"),
        ));
    }
    let mut parts = Vec::with_capacity(spec.triggers.len());
    for (index, part) in spec.triggers.iter().enumerate() {
        let place = format!("triggers[{index}]");
        let trigger = Trigger::new(part.clone(), context).map_err(|error| error.within(&place))?;
        if trigger.jitter().is_some() {
            return Err(TriggerError::conflict(
                format!("{place}.jitter"),
                format!("jitter belongs on the {kind} trigger itself, not on its parts"),
            ));
        }
        parts.push(trigger);
    }
    let zone = parts[0].timezone();
    let resolved = CombiningSpec {
        triggers: parts.iter().map(|part| part.spec().into_owned()).collect(),
        jitter: spec.jitter,
    };
    Ok(Trigger::from_parts(
        if all {
            TriggerSpec::And(resolved)
        } else {
            TriggerSpec::Or(resolved)
        },
        zone,
        spec.jitter,
        if all {
            Schedule::And(parts)
        } else {
            Schedule::Or(parts)
        },
    ))
}

/// The first instant at or after `instant` at which every part fires; `Ok(None)` when
/// a part is over, or the parts did not agree within [`AGREEMENT_ROUNDS`] jumps.
pub(crate) fn all_agree_at_or_after(
    parts: &[Trigger],
    instant: DateTime<Utc>,
    budget: &mut Budget,
) -> Result<Option<DateTime<Utc>>, EvaluationError> {
    let mut candidate = truncate_to_micros(instant);
    for _ in 0..AGREEMENT_ROUNDS {
        let mut latest = candidate;
        let mut agreed = true;
        for part in parts {
            let Some(fire) = part.first_fire_within(candidate, budget)? else {
                return Ok(None);
            };
            if fire != candidate {
                agreed = false;
            }
            latest = latest.max(fire);
        }
        if agreed {
            return Ok(Some(candidate));
        }
        candidate = latest;
    }
    Ok(None)
}

/// The earliest instant at or after `instant` at which any part fires.
pub(crate) fn any_at_or_after(
    parts: &[Trigger],
    instant: DateTime<Utc>,
    budget: &mut Budget,
) -> Result<Option<DateTime<Utc>>, EvaluationError> {
    let mut earliest = None;
    for part in parts {
        if let Some(fire) = part.first_fire_within(instant, budget)? {
            earliest = Some(earliest.map_or(fire, |known: DateTime<Utc>| known.min(fire)));
        }
    }
    Ok(earliest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(spec: serde_json::Value) -> Result<Trigger, TriggerError> {
        let spec: TriggerSpec = serde_json::from_value(spec)
            .map_err(|error| TriggerError::syntax("trigger", error.to_string()))?;
        let now: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap_or_default();
        Trigger::new(spec, &TriggerContext::new(now))
    }

    fn interval(seconds: u32, start: &str) -> serde_json::Value {
        json!({"type": "interval", "seconds": seconds, "start_date": start})
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let mut spec = interval(1, "2024-01-01T00:00:00Z");
        for _ in 0..MAX_NESTING {
            spec = json!({"type": "or", "triggers": [spec, interval(2, "2024-01-01T00:00:00Z")]});
        }
        assert!(build(spec.clone()).is_ok());
        let deeper = json!({"type": "and", "triggers": [spec]});
        let error = build(deeper)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("at most 3"), "{error}");
    }

    /// Parts that never agree (whole and half seconds) inside an `and` that asks the
    /// inner search once per jump: bounded by the shared budget, not by
    /// `AGREEMENT_ROUNDS` squared.
    #[test]
    fn nested_searches_share_one_budget() {
        let slow = json!({"type": "and", "triggers": [
            {"type": "and", "triggers": [
                interval(1000, "2024-01-01T00:00:00Z"),
                interval(1001, "2024-01-01T00:00:01Z"),
            ]},
            interval(1, "2024-01-01T00:00:00.5Z"),
        ]});
        let trigger = build(slow).unwrap_or_else(|error| panic!("{error}"));
        let from: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap_or_default();
        let started = Instant::now();
        let result = trigger.try_next_fire_time(None, from, &mut Budget::new(None));
        assert_eq!(result, Err(EvaluationError::OverBudget));
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        // The plain API keeps its meaning: no fire time.
        assert_eq!(trigger.next_fire_time(None, from), None);
    }
}
