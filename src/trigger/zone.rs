//! Time zones and the one place where civil (wall-clock) time becomes an instant.
//!
//! Triggers search calendar fields on civil date-times and only at the end turn a
//! match into an instant (docs/semantics.md, "Civil arithmetic"). This module owns that last
//! step and the DST rules that go with it, so every trigger applies them the same way.
//!
//! # Ground rules
//! - A civil time that does not exist (spring forward) maps to the first instant after
//!   the gap: 02:30 in New York on the spring-forward night is 03:00 EDT.
//! - A civil time that occurs twice (fall back) is reported with both instants; the
//!   caller decides whether it fires once (first pass) or in both passes.
//! - Offsets are whole seconds and transitions happen on whole seconds (true of every
//!   tzdb zone), so the transition search works in seconds.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tzdata;

/// A trigger's time zone: an IANA zone (`Asia/Shanghai`) or a fixed UTC offset (`+08:00`).
///
/// Fixed offsets exist because a date given with an explicit offset and no `timezone`
/// takes its zone from that offset, as in APScheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// A zone from the IANA database, with its DST rules.
    Named(Tz),
    /// A constant offset from UTC, with no DST.
    Fixed(FixedOffset),
}

/// Where a civil date-time falls on the time line of a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalTime {
    /// The civil time occurs exactly once.
    Unique(DateTime<Utc>),
    /// The civil time occurs twice (a fall-back fold): first and second pass.
    Ambiguous {
        /// The first occurrence, before the clocks went back.
        earliest: DateTime<Utc>,
        /// The second occurrence, after the clocks went back.
        latest: DateTime<Utc>,
    },
    /// The civil time does not exist (a spring-forward gap).
    Skipped {
        /// The first instant after the gap.
        after_gap: DateTime<Utc>,
    },
}

/// UTC, the zone of last resort.
pub const UTC: Zone = Zone::Named(Tz::UTC);

impl Zone {
    /// The zone of the machine: `TZ` if it names a zone, else the system's zone, else UTC.
    pub fn system() -> Zone {
        let from_env = std::env::var("TZ")
            .ok()
            .map(|name| name.trim_start_matches(':').to_owned());
        from_env
            .into_iter()
            .chain(iana_time_zone_name())
            .find_map(|name| name.parse::<Zone>().ok())
            .unwrap_or(UTC)
    }

    /// The zone's offset if it never changes (a fixed offset, or UTC by any of its
    /// names): the searches skip all DST work for such zones.
    pub fn fixed_offset(&self) -> Option<FixedOffset> {
        match self {
            Zone::Fixed(offset) => Some(*offset),
            Zone::Named(
                Tz::UTC
                | Tz::Etc__UTC
                | Tz::Etc__UCT
                | Tz::Etc__Universal
                | Tz::Etc__Zulu
                | Tz::Etc__GMT
                | Tz::GMT
                | Tz::UCT
                | Tz::Universal
                | Tz::Zulu,
            ) => FixedOffset::east_opt(0),
            Zone::Named(_) => None,
        }
    }

    /// The offset from UTC in force at `instant`, by the rules in use ([`tzdata`]:
    /// the system's tz database, else the compiled-in rules).
    pub fn offset_at(&self, instant: DateTime<Utc>) -> FixedOffset {
        match self.zone_rules() {
            Ok(tz) => tzdata::system_offset(*tz, instant.timestamp())
                .unwrap_or_else(|| tz.offset_from_utc_datetime(&instant.naive_utc()).fix()),
            Err(offset) => offset,
        }
    }

    /// The zone's DST rules, or its one offset when it has none (fixed offsets and
    /// UTC by any name), so callers skip every lookup for such zones.
    fn zone_rules(&self) -> Result<&Tz, FixedOffset> {
        match (self, self.fixed_offset()) {
            (_, Some(offset)) => Err(offset),
            (Zone::Named(tz), None) => Ok(tz),
            (Zone::Fixed(offset), None) => Err(*offset),
        }
    }

    /// The civil date-time shown by a clock in this zone at `instant`.
    pub fn to_local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        let offset = self.offset_at(instant);
        if offset.local_minus_utc() == 0 {
            return instant.naive_utc();
        }
        instant.naive_utc() + offset
    }

    /// `instant` with this zone's offset, for display.
    pub fn to_fixed(&self, instant: DateTime<Utc>) -> DateTime<FixedOffset> {
        instant.with_timezone(&self.offset_at(instant))
    }

    /// Where the civil date-time `civil` falls in this zone.
    pub fn resolve(&self, civil: NaiveDateTime) -> LocalTime {
        let tz = match self.zone_rules() {
            Ok(tz) => tz,
            Err(offset) => return LocalTime::Unique(fixed_to_utc(civil, offset)),
        };
        if tzdata::has_system_rules(*tz) {
            return self.resolve_by_offsets(civil);
        }
        match tz.from_local_datetime(&civil) {
            chrono::LocalResult::Single(instant) => LocalTime::Unique(instant.with_timezone(&Utc)),
            chrono::LocalResult::Ambiguous(earliest, latest) => LocalTime::Ambiguous {
                earliest: earliest.with_timezone(&Utc),
                latest: latest.with_timezone(&Utc),
            },
            chrono::LocalResult::None => LocalTime::Skipped {
                after_gap: self.gap_end(civil),
            },
        }
    }

    /// [`Zone::resolve`] from [`Zone::offset_at`] alone, for rules read from TZif files:
    /// `civil` read with an offset is an instant if the zone has that offset then.
    /// Offsets lie within -12h..+14h, so the offsets in force from 15 hours before
    /// `civil` (read as UTC) to 13 hours after it are the only candidates; tz data has
    /// at most one transition in such a window, so the two ends and the middle cover
    /// them.
    fn resolve_by_offsets(&self, civil: NaiveDateTime) -> LocalTime {
        resolve_by(&|instant| self.offset_at(instant), civil)
    }

    /// The instant a single wall-clock time denotes under docs/semantics.md's rules: the first
    /// instant after a gap, the first pass of a fold.
    pub fn localize(&self, civil: NaiveDateTime) -> DateTime<Utc> {
        match self.resolve(civil) {
            LocalTime::Unique(instant) => instant,
            LocalTime::Ambiguous { earliest, .. } => earliest,
            LocalTime::Skipped { after_gap } => after_gap,
        }
    }

    /// The first instant in `(earlier, later]` whose offset is that of `later`.
    ///
    /// The two instants must straddle exactly one offset change, which holds for the
    /// windows this module passes (a fold or a gap and its immediate neighbourhood).
    pub(crate) fn transition_between(
        &self,
        earlier: DateTime<Utc>,
        later: DateTime<Utc>,
    ) -> DateTime<Utc> {
        transition_by(&|instant| self.offset_at(instant), earlier, later)
    }

    /// The first instant after the gap that swallows `civil`.
    fn gap_end(&self, civil: NaiveDateTime) -> DateTime<Utc> {
        gap_end_by(&|instant| self.offset_at(instant), civil)
    }

    /// The zone's name as users write it: `Asia/Shanghai`, `UTC`, `+05:30`.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

/// A [`Zone`] in four bytes instead of eight, so a `date` trigger (an instant and a
/// zone) is 16 bytes and a million pending one-off jobs each save 8 (BENCHMARKS.md, memory
/// per pending job).
///
/// An IANA zone is its `Tz` discriminant (under 2^16); a fixed offset sets the top bit
/// and keeps its seconds biased by a day, as offsets are within a day either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedZone(u32);

impl PackedZone {
    /// Marks a fixed offset.
    const FIXED: u32 = 1 << 31;
    /// Added to a fixed offset's seconds (-86,399 to 86,399) to make them positive.
    const OFFSET_BIAS: i32 = 86_400;

    /// `zone`, packed.
    pub(crate) fn new(zone: Zone) -> PackedZone {
        match zone {
            Zone::Named(tz) => PackedZone(u32::from(tz as u16)),
            Zone::Fixed(offset) => {
                let biased = offset.local_minus_utc() + PackedZone::OFFSET_BIAS;
                PackedZone(PackedZone::FIXED | biased.unsigned_abs())
            }
        }
    }

    /// The zone it was packed from.
    pub(crate) fn unpack(self) -> Zone {
        if self.0 & PackedZone::FIXED != 0 {
            // The bias made the seconds positive and under 2^18, so they fit an i32.
            let biased = i32::try_from(self.0 & !PackedZone::FIXED).unwrap_or(0);
            // Always a valid offset: it was one when packed.
            return FixedOffset::east_opt(biased - PackedZone::OFFSET_BIAS)
                .map_or(UTC, Zone::Fixed);
        }
        // `TZ_VARIANTS` lists the zones in discriminant order (checked by a test), so
        // the discriminant finds the zone back.
        usize::try_from(self.0)
            .ok()
            .and_then(|index| chrono_tz::TZ_VARIANTS.get(index))
            .map_or(UTC, |tz| Zone::Named(*tz))
    }
}

/// The offsets of one zone's rules, by instant.
type OffsetAt<'a> = &'a dyn Fn(DateTime<Utc>) -> FixedOffset;

/// [`Zone::resolve_by_offsets`] over any rules.
fn resolve_by(offset_at: OffsetAt<'_>, civil: NaiveDateTime) -> LocalTime {
    let as_utc = civil.and_utc();
    let mut instants: Vec<DateTime<Utc>> = Vec::with_capacity(3);
    for probe in [
        as_utc - TimeDelta::hours(15),
        as_utc,
        as_utc + TimeDelta::hours(13),
    ] {
        let offset = offset_at(probe);
        let instant = fixed_to_utc(civil, offset);
        if offset_at(instant) == offset && !instants.contains(&instant) {
            instants.push(instant);
        }
    }
    instants.sort_unstable();
    match (instants.first(), instants.last()) {
        (Some(earliest), Some(latest)) if earliest != latest => LocalTime::Ambiguous {
            earliest: *earliest,
            latest: *latest,
        },
        (Some(instant), _) => LocalTime::Unique(*instant),
        _ => LocalTime::Skipped {
            after_gap: gap_end_by(offset_at, civil),
        },
    }
}

/// [`Zone::transition_between`] over any rules.
fn transition_by(
    offset_at: OffsetAt<'_>,
    earlier: DateTime<Utc>,
    later: DateTime<Utc>,
) -> DateTime<Utc> {
    let target = offset_at(later);
    let (mut low, mut high) = (earlier.timestamp(), later.timestamp());
    // Invariant: the offset at `low` differs from `target`, the offset at `high` is it.
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset_at(from_timestamp(middle)) == target {
            high = middle;
        } else {
            low = middle;
        }
    }
    from_timestamp(high)
}

/// [`Zone::gap_end`] over any rules.
fn gap_end_by(offset_at: OffsetAt<'_>, civil: NaiveDateTime) -> DateTime<Utc> {
    // Real offsets lie within -12h..+14h, so the transition that made the gap lies
    // within this window around `civil` read as UTC.
    let as_utc = civil.and_utc();
    let earlier = as_utc - TimeDelta::hours(15);
    let later = as_utc + TimeDelta::hours(13);
    if offset_at(earlier) == offset_at(later) {
        // Not a gap after all (cannot happen with tzdb data); fall back to the
        // offset in force just before.
        return fixed_to_utc(civil, offset_at(earlier));
    }
    transition_by(offset_at, earlier, later)
}

fn fixed_to_utc(civil: NaiveDateTime, offset: FixedOffset) -> DateTime<Utc> {
    if offset.local_minus_utc() == 0 {
        return civil.and_utc();
    }
    (civil - offset).and_utc()
}

fn from_timestamp(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn iana_time_zone_name() -> Option<String> {
    // /etc/localtime is a link into the zoneinfo tree on Linux; its target names the zone.
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let target = target.to_string_lossy();
    let (_, name) = target.split_once("zoneinfo/")?;
    Some(name.to_owned())
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

/// Why a zone name was not understood: the name, and the closest zone name if one is
/// a likely typo of it (`Europe/Berln` → `Europe/Berlin`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?} ({hint})", hint = unknown_zone_hint(.1))]
pub struct UnknownZone(pub String, pub Option<&'static str>);

fn unknown_zone_hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(name) => format!("did you mean {name:?}?"),
        None => "expected an IANA name such as \"Europe/London\", \"UTC\" or an offset \
                 such as \"+08:00\""
            .to_owned(),
    }
}

impl FromStr for Zone {
    type Err = UnknownZone;

    fn from_str(text: &str) -> Result<Zone, UnknownZone> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(UTC);
        }
        if let Some(offset) = parse_offset(trimmed) {
            return Ok(Zone::Fixed(offset));
        }
        trimmed
            .parse::<Tz>()
            .map(Zone::Named)
            .or_else(|_| {
                // Users type `europe/london` too; the zone list is only walked on a miss.
                chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
                    .map(|tz| Zone::Named(*tz))
                    .ok_or(())
            })
            .map_err(|_| {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
                UnknownZone(text.to_owned(), crate::suggest::closest_of(trimmed, names))
            })
    }
}

/// Parses `+HH:MM`, `-HH:MM`, `+HHMM` or `+HH` into an offset.
pub(crate) fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Zone, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// The system's TZif rules and the compiled-in ones resolve every hour of 2020 to
    /// 2037 alike, gaps and folds included, in zones with unusual DST: a 30-minute
    /// shift (Lord Howe), negative DST (Dublin), the southern hemisphere, a 45-minute
    /// offset (Chatham), and rule changes (Casablanca, Tehran). Both sources hold
    /// docs/semantics.md's DST rules the same way.
    #[test]
    fn system_rules_resolve_as_the_compiled_in_ones() {
        let dir = std::path::Path::new(tzdata::SYSTEM_TZDIR);
        if !dir.join("UTC").is_file() {
            println!("SKIP no system tz database at {}", dir.display());
            return;
        }
        for name in [
            "America/New_York",
            "Europe/Berlin",
            "Europe/Dublin",
            "Australia/Sydney",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "Africa/Casablanca",
            "Asia/Tehran",
            "America/Santiago",
        ] {
            let tz: Tz = name.parse().expect("a zone chrono-tz knows");
            let bytes = std::fs::read(dir.join(name)).expect("the system's zone file");
            let rules = jiff::tz::TimeZone::tzif(name, &bytes).expect("TZif");
            let system = |instant: DateTime<Utc>| {
                let timestamp =
                    jiff::Timestamp::from_second(instant.timestamp()).expect("in range");
                FixedOffset::east_opt(rules.to_offset(timestamp).seconds()).expect("an offset")
            };
            let compiled =
                |instant: DateTime<Utc>| tz.offset_from_utc_datetime(&instant.naive_utc()).fix();
            let mut civil = NaiveDate::from_ymd_opt(2020, 1, 1)
                .and_then(|day| day.and_hms_opt(0, 30, 0))
                .expect("a date");
            let end = NaiveDate::from_ymd_opt(2037, 12, 31)
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .expect("a date");
            while civil < end {
                let from_system = resolve_by(&system, civil);
                assert_eq!(from_system, resolve_by(&compiled, civil), "{name} {civil}");
                let expected = match tz.from_local_datetime(&civil) {
                    chrono::LocalResult::Single(at) => {
                        Some(LocalTime::Unique(at.with_timezone(&Utc)))
                    }
                    chrono::LocalResult::Ambiguous(earliest, latest) => {
                        Some(LocalTime::Ambiguous {
                            earliest: earliest.with_timezone(&Utc),
                            latest: latest.with_timezone(&Utc),
                        })
                    }
                    chrono::LocalResult::None => None,
                };
                if let Some(expected) = expected {
                    assert_eq!(from_system, expected, "{name} {civil}");
                } else {
                    assert!(
                        matches!(from_system, LocalTime::Skipped { .. }),
                        "{name} {civil}"
                    );
                }
                civil += TimeDelta::hours(1);
            }
        }
    }

    fn civil(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("test literal")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        civil(text).and_utc()
    }

    #[test]
    fn parses_names_offsets_and_utc() {
        assert_eq!("UTC".parse::<Zone>(), Ok(UTC));
        assert_eq!("utc".parse::<Zone>(), Ok(UTC));
        assert_eq!(
            "Asia/Shanghai".parse::<Zone>(),
            Ok(Zone::Named(Tz::Asia__Shanghai))
        );
        assert_eq!(
            "europe/london".parse::<Zone>(),
            Ok(Zone::Named(Tz::Europe__London))
        );
        assert_eq!(
            "+05:30".parse::<Zone>().map(|z| z.to_string()),
            Ok("+05:30".to_owned())
        );
        assert!("Mars/Olympus".parse::<Zone>().is_err());
        assert!("+25:00".parse::<Zone>().is_err());
    }

    #[test]
    fn new_york_spring_forward_gap_maps_to_its_end() {
        let zone: Zone = "America/New_York".parse().expect("zone");
        // 2024-03-10 02:30 does not exist; the clocks jumped from 02:00 EST to 03:00 EDT,
        // which is 07:00 UTC.
        assert_eq!(
            zone.resolve(civil("2024-03-10 02:30:00")),
            LocalTime::Skipped {
                after_gap: utc("2024-03-10 07:00:00")
            }
        );
    }

    #[test]
    fn new_york_fall_back_fold_has_two_instants() {
        let zone: Zone = "America/New_York".parse().expect("zone");
        assert_eq!(
            zone.resolve(civil("2024-11-03 01:30:00")),
            LocalTime::Ambiguous {
                earliest: utc("2024-11-03 05:30:00"),
                latest: utc("2024-11-03 06:30:00"),
            }
        );
    }

    #[test]
    fn apia_skipped_a_whole_day() {
        let zone: Zone = "Pacific/Apia".parse().expect("zone");
        // 2011-12-30 did not exist in Samoa: 2011-12-29 23:59:59 -10:00 was followed by
        // 2011-12-31 00:00:00 +14:00 (2011-12-30 10:00 UTC).
        let noon = NaiveDate::from_ymd_opt(2011, 12, 30)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("date");
        assert_eq!(
            zone.resolve(noon),
            LocalTime::Skipped {
                after_gap: utc("2011-12-30 10:00:00")
            }
        );
    }

    #[test]
    fn lord_howe_half_hour_fold() {
        let zone: Zone = "Australia/Lord_Howe".parse().expect("zone");
        // 2024-04-07 02:00 +11:00 -> 01:30 +10:30: 01:30..02:00 happens twice.
        match zone.resolve(civil("2024-04-07 01:45:00")) {
            LocalTime::Ambiguous { earliest, latest } => {
                assert_eq!(latest - earliest, TimeDelta::minutes(30))
            }
            other => panic!("expected a fold, got {other:?}"),
        }
    }

    #[test]
    fn packed_zones_unpack_to_the_same_zone() {
        for tz in chrono_tz::TZ_VARIANTS {
            let zone = Zone::Named(tz);
            assert_eq!(PackedZone::new(zone).unpack(), zone, "{tz:?}");
        }
        for seconds in [-86_399, -43_200, -1, 0, 1, 19_800, 20_700, 86_399] {
            let zone = Zone::Fixed(FixedOffset::east_opt(seconds).expect("within a day"));
            assert_eq!(PackedZone::new(zone).unpack(), zone, "{seconds}");
        }
        assert_ne!(
            PackedZone::new(UTC),
            PackedZone::new(Zone::Fixed(FixedOffset::east_opt(0).expect("zero"))),
            "UTC by name and a zero offset are different zones, as `Zone` has them"
        );
    }
}
