//! What the Redis store writes and reads, as text: jobs, instants and errors.
//!
//! Pure functions, so they are tested without a server. A job is stored as its serde
//! JSON plus two fields beside it that the scripts own: the revision and the next run
//! time. Those two are authoritative: the copies inside the JSON are whatever they were
//! when it was written, and [`decode_job`] overwrites them on every read.
//!
//! Instants are whole microseconds since the epoch, in decimal (the precision of the
//! other stores). Sorted-set scores are doubles, exact up to 2^53 µs (the year 2255);
//! later instants sort within a few µs of their place, and the exact value is always
//! the decimal string in the `next` hash.

use chrono::{DateTime, Utc};

use crate::job::Job;
use crate::store::StoreError;

/// `instant` as the decimal microseconds the scripts compare and sort by.
pub(super) fn micros(instant: DateTime<Utc>) -> String {
    instant.timestamp_micros().to_string()
}

/// An optional instant as the scripts take it: `""` for none.
pub(super) fn micros_or_empty(instant: Option<DateTime<Utc>>) -> String {
    instant.map(micros).unwrap_or_default()
}

/// What put.lua compares to tell a write that changes a job's schedule (the ground
/// rules of [`crate::store`]): the job's trigger, as stored, and whether it is paused.
/// The next run time is compared beside it, in the `next` hash.
pub(super) fn schedule_key(job: &Job) -> Result<String, StoreError> {
    let trigger = serde_json::to_string(&job.trigger)
        .map_err(|error| StoreError::corrupt(format!("job {:?}: {error}", job.id)))?;
    Ok(format!("{} {trigger}", u8::from(job.paused)))
}

/// Reads back what [`micros_or_empty`] wrote.
pub(super) fn parse_micros(text: &str) -> Result<Option<DateTime<Utc>>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a time in microseconds"))?;
    DateTime::from_timestamp_micros(value)
        .map(Some)
        .ok_or_else(|| format!("{value} µs is out of range"))
}

/// Reads a sorted-set score (Redis prints doubles as `%.17g`, e.g. `1.8934560e+15`).
pub(super) fn parse_score(text: &str) -> Result<DateTime<Utc>, String> {
    let value: f64 = text
        .parse()
        .ok()
        .filter(|value: &f64| value.is_finite())
        .ok_or_else(|| format!("{text:?} is not a finite score"))?;
    // `as` saturates, and an instant out of chrono's range is refused just below.
    DateTime::from_timestamp_micros(value.round() as i64)
        .ok_or_else(|| format!("score {text} is out of range"))
}

/// The job stored under `id`, from its JSON and the revision and next run time kept
/// beside it; `Err` says what is unreadable.
pub(super) fn decode_job(id: &str, json: &str, revision: &str, next: &str) -> Result<Job, String> {
    let mut job: Job = serde_json::from_str(json).map_err(|error| format!("job JSON: {error}"))?;
    if job.id != id {
        return Err(format!(
            "the JSON stored under this id holds id {:?}",
            job.id
        ));
    }
    job.revision = revision
        .parse()
        .map_err(|_| format!("revision {revision:?} is not a number"))?;
    job.next_run_time = parse_micros(next)?;
    Ok(job)
}

/// Maps a Redis failure to a store error kind: a reply that does not have the shape
/// the store wrote (a parse error, a key of the wrong type under our prefix) is
/// `Corrupt`; everything else (I/O, timeouts, refused connections, a server that is
/// loading or read-only, a script error) is `Unavailable`, which the scheduler retries.
pub(super) fn store_error(error: ::redis::RedisError) -> StoreError {
    use ::redis::ErrorKind;
    let corrupt = matches!(
        error.kind(),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType
    ) || error.code() == Some("WRONGTYPE");
    let message = format!("Redis: {error}");
    let kind = if corrupt {
        StoreError::corrupt(message)
    } else {
        StoreError::unavailable(message)
    };
    kind.caused_by(error)
}

#[cfg(test)]
mod tests {
    use ::redis::{ErrorKind, RedisError};
    use serde_json::json;

    use super::*;
    use crate::store::StoreErrorKind;
    use crate::trigger::{Trigger, TriggerContext, TriggerSpec};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn job() -> Option<Job> {
        let spec: TriggerSpec = serde_json::from_value(json!({
            "type": "interval", "seconds": 10, "start_date": "2030-01-01T00:00:00Z", "timezone": "UTC",
        }))
        .ok()?;
        Some(Job {
            id: "a".to_owned(),
            name: "a".to_owned(),
            task: "noop".to_owned(),
            // cjson would turn [] into {} and round 2^63-1: the scripts never decode it.
            args: json!({"list": [], "big": 9_223_372_036_854_775_807_i64}),
            trigger: Trigger::new(spec, &TriggerContext::new(at("2030-01-01T00:00:00Z"))).ok()?,
            executor: "default".to_owned(),
            misfire_grace_time: None,
            coalesce: true,
            max_instances: 1,
            overlap: Default::default(),
            jitter: None,
            paused: false,
            next_run_time: Some(at("2030-01-01T00:00:10Z")),
            revision: 3,
            config_spec: None,
            config_version: None,
            retry: Default::default(),
            expect_success: None,
        })
    }

    #[test]
    fn instants_round_trip_to_the_microsecond() {
        let instant = at("2030-01-01T00:00:10.123456Z");
        assert_eq!(micros(instant), "1893456010123456");
        assert_eq!(parse_micros(&micros(instant)), Ok(Some(instant)));
        assert_eq!(parse_micros(""), Ok(None));
        assert_eq!(micros_or_empty(None), "");
        assert!(parse_micros("soon").is_err());
        assert!(parse_micros(&i64::MAX.to_string()).is_err());
        // Before the epoch too.
        let old = at("1960-05-01T12:00:00.000001Z");
        assert_eq!(parse_micros(&micros(old)), Ok(Some(old)));
    }

    #[test]
    fn scores_read_back_as_redis_prints_them() {
        assert_eq!(
            parse_score("1893456010123456"),
            Ok(at("2030-01-01T00:00:10.123456Z"))
        );
        assert_eq!(
            parse_score("1.893456010123456e+15"),
            Ok(at("2030-01-01T00:00:10.123456Z"))
        );
        assert!(parse_score("inf").is_err());
        assert!(parse_score("nan").is_err());
    }

    #[test]
    fn the_fields_beside_the_json_win_over_its_copies() -> Result<(), String> {
        let job = job().ok_or("test job")?;
        let json = serde_json::to_string(&job).map_err(|error| error.to_string())?;
        let read = decode_job("a", &json, "42", "1893456020000000")?;
        assert_eq!(read.revision, 42);
        assert_eq!(read.next_run_time, Some(at("2030-01-01T00:00:20Z")));
        assert_eq!(read.args, job.args, "args come back exactly");
        let paused = decode_job("a", &json, "43", "")?;
        assert_eq!(paused.next_run_time, None);
        Ok(())
    }

    #[test]
    fn unreadable_jobs_say_why() -> Result<(), String> {
        let job = job().ok_or("test job")?;
        let json = serde_json::to_string(&job).map_err(|error| error.to_string())?;
        let error = |result: Result<Job, String>| result.err().unwrap_or_default();
        assert!(error(decode_job("a", "{not json", "1", "")).starts_with("job JSON"));
        assert!(error(decode_job("b", &json, "1", "")).contains("holds id \"a\""));
        assert!(error(decode_job("a", &json, "x", "")).contains("revision"));
        assert!(error(decode_job("a", &json, "1", "later")).contains("microseconds"));
        Ok(())
    }

    #[test]
    fn redis_failures_map_to_store_error_kinds() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(store_error(io).kind(), StoreErrorKind::Unavailable);
        let parse = RedisError::from((ErrorKind::UnexpectedReturnType, "not an array"));
        assert_eq!(store_error(parse).kind(), StoreErrorKind::Corrupt);
        let client = RedisError::from((ErrorKind::Client, "dropped"));
        assert_eq!(store_error(client).kind(), StoreErrorKind::Unavailable);
    }
}
