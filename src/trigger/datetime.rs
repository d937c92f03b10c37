//! Reading and writing the date-times that users give triggers.
//!
//! Accepted forms are APScheduler's (`convert_to_datetime`) plus RFC 3339: a date
//! (`2024-03-01`), a date and time (`2024-03-01 12:00:00`, `T` or space, optional
//! fraction) and either of those with `Z` or an offset. A value without an offset is a
//! civil time in the trigger's zone; with an offset it is an instant.
//!
//! Output follows Python's `datetime.isoformat()`, which is also RFC 3339: seconds
//! always, microseconds only when non-zero, the offset as `+HH:MM`.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

use super::zone::{parse_offset, Zone};

/// A date-time as written: either a civil time (zone to be decided) or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrittenDateTime {
    /// No offset was given: a wall-clock time in the trigger's zone.
    Civil(NaiveDateTime),
    /// An offset or `Z` was given.
    Instant(DateTime<FixedOffset>),
}

impl WrittenDateTime {
    /// The offset that was written, if any: a zone of last resort for the trigger.
    pub fn offset(&self) -> Option<FixedOffset> {
        match self {
            WrittenDateTime::Civil(_) => None,
            WrittenDateTime::Instant(instant) => Some(*instant.offset()),
        }
    }

    /// The instant this denotes when civil times are read in `zone`.
    pub fn to_instant(&self, zone: &Zone) -> DateTime<Utc> {
        match self {
            WrittenDateTime::Civil(civil) => zone.localize(*civil),
            WrittenDateTime::Instant(instant) => instant.with_timezone(&Utc),
        }
    }

    /// The civil date this denotes in `zone`.
    pub fn to_date(&self, zone: &Zone) -> NaiveDate {
        match self {
            WrittenDateTime::Civil(civil) => civil.date(),
            WrittenDateTime::Instant(instant) => zone.to_local(instant.with_timezone(&Utc)).date(),
        }
    }
}

/// Parses a date-time in any accepted form; the error says what was expected.
pub fn parse_datetime(text: &str) -> Result<WrittenDateTime, String> {
    if let Some(parsed) = parse_canonical(text.as_bytes()) {
        return Ok(parsed);
    }
    parse_any(text)
}

/// The canonical form, `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)` (what kairos and most
/// programs write), read byte by byte: an order service adding thousands of delayed
/// jobs a second sends exactly this. Anything else goes to [`parse_any`].
fn parse_canonical(bytes: &[u8]) -> Option<WrittenDateTime> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes.get(range)?.iter().try_fold(0u32, |value, byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u32::from(byte - b'0'))
        })
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(0..4)?).ok()?,
        digits(5..7)?,
        digits(8..10)?,
    )?;
    let mut at = 19;
    let mut micros = 0;
    if bytes[at] == b'.' {
        let end = at
            + 1
            + bytes[at + 1..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
        let kept = (end - at - 1).min(6);
        if kept == 0 {
            return None;
        }
        micros = digits(at + 1..at + 1 + kept)? * 10u32.pow(6 - kept as u32);
        at = end;
    }
    let time =
        NaiveTime::from_hms_micro_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, micros)?;
    let offset = match bytes.get(at..)? {
        b"Z" | b"z" => FixedOffset::east_opt(0)?,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let seconds =
                i32::try_from(digits(at + 1..at + 3)? * 3600 + digits(at + 4..at + 6)? * 60)
                    .ok()?;
            FixedOffset::east_opt(if *sign == b'-' { -seconds } else { seconds })?
        }
        _ => return None,
    };
    date.and_time(time)
        .and_local_timezone(offset)
        .single()
        .map(WrittenDateTime::Instant)
}

/// Every accepted form, with an error that says what was expected.
fn parse_any(text: &str) -> Result<WrittenDateTime, String> {
    let trimmed = text.trim();
    let expected = || {
        format!(
            "{text:?} is not a date-time (expected e.g. \"2024-03-01\", \
             \"2024-03-01 12:00:00\" or \"2024-03-01T12:00:00+08:00\")"
        )
    };
    // The date ends at the first 'T', 't' or space; months and days may have one digit
    // (APScheduler's `convert_to_datetime` accepts `2009-7-6`).
    let date_end = trimmed.find(['T', 't', ' ']).unwrap_or(trimmed.len());
    let (date_text, rest) = trimmed.split_at(date_end);
    let date = parse_date(date_text).ok_or_else(expected)?;
    if rest.is_empty() {
        return Ok(WrittenDateTime::Civil(date.and_time(NaiveTime::MIN)));
    }
    let rest = rest
        .strip_prefix(['T', 't', ' '])
        .ok_or_else(expected)?
        .trim_start();
    // The offset starts at the first 'Z', '+' or '-' after the time.
    let offset_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time_text, offset_text) = rest.split_at(offset_at);
    let time = parse_time(time_text.trim_end()).ok_or_else(expected)?;
    let civil = date.and_time(time);
    if offset_text.is_empty() {
        return Ok(WrittenDateTime::Civil(civil));
    }
    let offset = if offset_text.eq_ignore_ascii_case("z") {
        FixedOffset::east_opt(0)
    } else {
        parse_offset(offset_text)
    }
    .ok_or_else(expected)?;
    civil
        .and_local_timezone(offset)
        .single()
        .map(WrittenDateTime::Instant)
        .ok_or_else(expected)
}

/// `YYYY-M-D` with a 4-digit year and 1- or 2-digit month and day.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.split('-');
    let mut number = |digits: std::ops::RangeInclusive<usize>| -> Option<u32> {
        let part = parts.next()?;
        if !digits.contains(&part.len()) || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = number(4..=4)?;
    let month = number(1..=2)?;
    let day = number(1..=2)?;
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction` (fraction truncated to microseconds).
fn parse_time(text: &str) -> Option<NaiveTime> {
    let (clock, fraction) = match text.split_once(['.', ',']) {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let mut parts = clock.split(':');
    let mut number = |max: u32| -> Option<u32> {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|value| *value <= max)
    };
    let hour = number(23)?;
    let minute = number(59)?;
    let second = match clock.matches(':').count() {
        1 => 0,
        2 => number(59)?,
        _ => return None,
    };
    let micros = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let kept: String = digits.chars().take(6).collect();
            let scale = 10u32.pow(6 - kept.len() as u32);
            kept.parse::<u32>().ok()? * scale
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_micro_opt(hour, minute, second, micros)
}

/// Formats `instant` in `zone` as Python's `isoformat()` does (RFC 3339).
pub fn format_instant(instant: DateTime<Utc>, zone: &Zone) -> String {
    let local = zone.to_fixed(instant);
    let precision = if local.nanosecond() == 0 {
        chrono::SecondsFormat::Secs
    } else {
        chrono::SecondsFormat::Micros
    };
    local.to_rfc3339_opts(precision, false)
}

/// Rounds `instant` up to a whole second (APScheduler's `datetime_ceil`).
pub(crate) fn ceil_to_second(instant: DateTime<Utc>) -> DateTime<Utc> {
    // `timestamp_subsec_nanos` reads the field; `nanosecond()` would convert to local
    // time first, which costs more than the whole cron search on a hot path.
    if instant.timestamp_subsec_nanos() == 0 {
        instant
    } else {
        instant
            .with_nanosecond(0)
            .and_then(|whole| whole.checked_add_signed(chrono::TimeDelta::seconds(1)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Drops anything finer than a microsecond: instants are stored with microsecond precision.
pub(crate) fn truncate_to_micros(instant: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = instant.timestamp_subsec_nanos();
    if nanos % 1_000 == 0 {
        return instant;
    }
    instant
        .with_nanosecond(nanos - nanos % 1_000)
        .unwrap_or(instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let civil = |text: &str| match parse_datetime(text) {
            Ok(WrittenDateTime::Civil(civil)) => civil.to_string(),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(civil("2024-03-01"), "2024-03-01 00:00:00");
        assert_eq!(civil("2024-03-01 12:30"), "2024-03-01 12:30:00");
        assert_eq!(civil("2024-03-01T12:30:15"), "2024-03-01 12:30:15");
        assert_eq!(civil("2024-03-01 12:30:15.5"), "2024-03-01 12:30:15.500");
        assert_eq!(civil("2009-7-6"), "2009-07-06 00:00:00");
        assert_eq!(civil("2009-7-6 1:2:3"), "2009-07-06 01:02:03");
        assert_eq!(
            civil("2024-03-01 12:30:15.123456789"),
            "2024-03-01 12:30:15.123456"
        );
        let instant = |text: &str| match parse_datetime(text) {
            Ok(WrittenDateTime::Instant(instant)) => instant.to_rfc3339(),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            instant("2024-03-01T12:00:00+08:00"),
            "2024-03-01T12:00:00+08:00"
        );
        assert_eq!(instant("2024-03-01 12:00:00Z"), "2024-03-01T12:00:00+00:00");
        assert_eq!(
            instant("2024-03-01T12:00:00-0530"),
            "2024-03-01T12:00:00-05:30"
        );
        assert_eq!(
            instant("2024-03-01T12:00:00.25+05:30"),
            "2024-03-01T12:00:00.250+05:30"
        );
        assert_eq!(
            instant("2024-03-01T12:00:00.1234567Z"),
            "2024-03-01T12:00:00.123456+00:00"
        );
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for text in [
            "",
            "2024",
            "2024-13-01",
            "2024-02-30",
            "2024-03-01 25:00",
            "2024-03-01 12",
            "2024-03-01x12:00",
            "24-03-01",
            "2024-003-01",
            "2024-03-01-02",
            "2024-03-01 12:00:00+99:00",
            "2024-03-01T12:00:00+24:00",
            "2024-03-01T12:00:00.Z",
            "2024-03-01T25:00:00Z",
            "2024-02-30T12:00:00Z",
            "tomorrow",
            "2024-03-01 12:00:00.",
            "ééééééééééé",
        ] {
            assert!(parse_datetime(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn formats_like_isoformat() {
        let zone: Zone = "Asia/Shanghai".parse().expect("zone");
        let instant = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("literal")
            .with_timezone(&Utc);
        assert_eq!(format_instant(instant, &zone), "2024-01-01T08:00:00+08:00");
        let with_micros = instant + chrono::TimeDelta::microseconds(1500);
        assert_eq!(
            format_instant(with_micros, &super::super::zone::UTC),
            "2024-01-01T00:00:00.001500+00:00"
        );
    }
}
