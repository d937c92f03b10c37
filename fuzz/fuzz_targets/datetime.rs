//! Date-times as triggers take them (`2024-03-01`, `2024-03-01 12:00:00`, RFC 3339 with
//! an offset). Checks: no panic; the instant a parsed date-time denotes, in UTC and in a
//! zone with DST, written out by kairos and read again is the same instant (to the
//! minute for offsets with seconds, which RFC 3339 cannot write).
#![no_main]

use kairos::trigger::datetime::{format_instant, parse_datetime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = kairos_fuzz::text(data) else {
        return;
    };
    let Ok(written) = parse_datetime(text) else {
        return;
    };
    for zone in [kairos::trigger::zone::UTC, kairos_fuzz::default_zone()] {
        let instant = written.to_instant(&zone);
        let _ = written.to_date(&zone);
        let formatted = format_instant(instant, &zone);
        // Years outside 1-9999 (year 0 in UTC is year -1 in New York) are written with a
        // sign, which the date parser does not read: outside the range kairos schedules
        // in (README.md, "Fuzzing"), so only the absence of a panic is checked there.
        if formatted.starts_with(['-', '+']) {
            continue;
        }
        // RFC 3339 offsets have whole minutes: a local mean time before a zone's first
        // standard time (New York until 1883, -04:56:02) is written without its
        // seconds, so only there the instant read back may be off by under a minute.
        let exact = zone.offset_at(instant).local_minus_utc() % 60 == 0;
        match parse_datetime(&formatted) {
            Ok(again) => {
                let off = (again.to_instant(&zone) - instant).num_seconds().abs();
                assert!(
                    off == 0 && again.to_instant(&zone) == instant || !exact && off < 60,
                    "{text:?} written as {formatted:?} reads back as {:?}",
                    again.to_instant(&zone)
                );
            }
            Err(error) => panic!("{text:?} written as {formatted:?} does not read back: {error}"),
        }
    }
});
