//! `kairos next`: a trigger's coming fire times, from `next`-style words, computed
//! by the same code that fires jobs.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kairos::trigger::datetime::format_instant;
use kairos::trigger::words::spec_from_words;
use kairos::trigger::{Trigger, TriggerContext, Zone};

pub(super) enum NextError {
    /// The user's input is wrong: one line naming the field and the reason.
    Invalid(String),
    /// Writing the output failed.
    Output(anyhow::Error),
}

/// The most fire times `kairos next -n` lists: a preview, not an export, and each one
/// may take a combined trigger's whole evaluation budget.
pub(super) const MAX_NEXT_COUNT: usize = 10_000;

pub(super) fn next(
    kind: &str,
    words: &[String],
    from: Option<&str>,
    count: usize,
    json: bool,
) -> Result<(), NextError> {
    let from = match from {
        Some(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|instant| instant.with_timezone(&Utc))
            .map_err(|error| {
                NextError::Invalid(format!(
                    "--from: {text:?} is not an RFC 3339 instant ({error}; e.g. 2024-03-01T12:00:00+08:00)"
                ))
            })?,
        None => Utc::now(),
    };
    let spec =
        spec_from_words(kind, words).map_err(|error| NextError::Invalid(error.to_string()))?;
    let context = TriggerContext::new(from).with_timezone(Zone::system());
    let trigger =
        Trigger::new(spec, &context).map_err(|error| NextError::Invalid(error.to_string()))?;
    if count > MAX_NEXT_COUNT {
        return Err(NextError::Invalid(format!(
            "-n: {count} is more than {MAX_NEXT_COUNT} fire times"
        )));
    }
    let zone = trigger.timezone();
    let times: Vec<String> = trigger
        .try_fire_times(from, count, None)
        .map_err(|error| NextError::Invalid(format!("trigger: {error}")))?
        .into_iter()
        .map(|instant| format_instant(instant, &zone))
        .collect();
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut out, &times)
            .map_err(anyhow::Error::from)
            .and_then(|()| writeln!(out).map_err(anyhow::Error::from))
    } else {
        times
            .iter()
            .try_for_each(|time| writeln!(out, "{time}"))
            .map_err(anyhow::Error::from)
    };
    written
        .context("writing the fire times")
        .map_err(NextError::Output)
}
