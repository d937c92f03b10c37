//! The compiled form of a cron or crontab expression and the search for its next
//! matching civil date-time.
//!
//! The search is APScheduler 3.x's `CronTrigger.get_next_fire_time` walk (advance the
//! most significant field that does not match, reset the finer ones, start over), run on
//! civil date-times instead of zone-aware ones. Civil arithmetic is what keeps it out of
//! APScheduler's DST bugs (its issue #529); the zone is applied afterwards by
//! [`crate::trigger::civil`]. In a zone without DST the two agree to the second.
//!
//! Each field is a bitmask, so "the next allowed value at or after v" is one shift and
//! one `trailing_zeros`, and the walk rarely takes more than a handful of steps.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::field::Item;

/// APScheduler's year bounds.
pub(crate) const MIN_YEAR: i32 = 1970;
/// APScheduler's year bounds.
pub(crate) const MAX_YEAR: i32 = 9999;

/// Which days of a month match: fixed days plus days that depend on the month.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DaySet {
    /// Fixed days of the month (bit d = day d).
    pub days: u64,
    /// `last`: the month's last day.
    pub last_day: bool,
    /// `2nd mon`, `last fri`: (nth 0..=4 or 5 for last, weekday with Monday = 0).
    pub positions: Vec<(u8, u8)>,
    /// Every day that falls on one of these weekdays (bit 0 = Monday): crontab's
    /// day-of-week when it is OR-ed with the day of the month.
    pub weekdays: u8,
}

impl DaySet {
    /// The days of `month` in `year` that match (bit d = day d).
    fn mask(&self, year: i32, month: u32, last: u32) -> u64 {
        let mut mask = self.days;
        if self.last_day {
            mask |= 1 << last;
        }
        if !self.positions.is_empty() || self.weekdays != 0 {
            let first_weekday = weekday(year, month, 1);
            let first_hit = |weekday: u32| (weekday + 7 - first_weekday) % 7 + 1;
            for &(nth, weekday) in &self.positions {
                let first = first_hit(u32::from(weekday));
                let target = if nth < 5 {
                    first + u32::from(nth) * 7
                } else {
                    first + (last - first) / 7 * 7
                };
                if target <= last {
                    mask |= 1 << target;
                }
            }
            // Days 1, 8, 15, 22 and 29, shifted onto the first occurrence of a weekday.
            const WEEKLY: u64 = (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29);
            for weekday in 0..7 {
                if self.weekdays & (1 << weekday) != 0 {
                    mask |= WEEKLY << (first_hit(weekday) - 1);
                }
            }
        }
        mask & ((2u64 << last) - 1)
    }
}

/// A cron expression compiled to value sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronSchedule {
    /// Year ranges (years do not fit a mask).
    pub years: Vec<Item>,
    /// Months, bit m = month m (1..=12).
    pub months: u64,
    /// Days of the month.
    pub days: DaySet,
    /// ISO weeks, bit w = week w (1..=53).
    pub weeks: u64,
    /// Weekdays, bit 0 = Monday.
    pub weekdays: u64,
    /// Hours, bit h = hour h.
    pub hours: u64,
    /// Minutes, bit m = minute m.
    pub minutes: u64,
    /// Seconds, bit s = second s.
    pub seconds: u64,
}

/// Bits `low..=high` set.
pub(crate) const fn bits(low: u32, high: u32) -> u64 {
    (u64::MAX >> (63 - high)) & (u64::MAX << low)
}

const YEAR: usize = 0;
const MONTH: usize = 1;
const DAY: usize = 2;
const WEEK: usize = 3;
const WEEKDAY: usize = 4;
const HOUR: usize = 5;
const MINUTE: usize = 6;
const SECOND: usize = 7;

/// A civil date-time as plain numbers, the walk's working state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Civil {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    fn from_naive(civil: NaiveDateTime) -> Civil {
        Civil {
            year: civil.year(),
            month: civil.month(),
            day: civil.day(),
            hour: civil.hour(),
            minute: civil.minute(),
            second: civil.second(),
        }
    }

    fn to_naive(self) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(self.year, self.month, self.day)?.and_hms_opt(
            self.hour,
            self.minute,
            self.second,
        )
    }

    /// The value of a real (settable) field.
    fn get(&self, field: usize) -> u32 {
        match field {
            YEAR => self.year as u32,
            MONTH => self.month,
            DAY => self.day,
            HOUR => self.hour,
            MINUTE => self.minute,
            _ => self.second,
        }
    }

    fn set(&mut self, field: usize, value: u32) {
        match field {
            YEAR => self.year = value as i32,
            MONTH => self.month = value,
            DAY => self.day = value,
            HOUR => self.hour = value,
            MINUTE => self.minute = value,
            _ => self.second = value,
        }
    }
}

/// Week and weekday cannot be set directly: changing them means moving the day.
fn is_real(field: usize) -> bool {
    field != WEEK && field != WEEKDAY
}

fn field_min(field: usize) -> u32 {
    match field {
        YEAR => MIN_YEAR as u32,
        MONTH | DAY | WEEK => 1,
        _ => 0,
    }
}

fn field_max(field: usize, civil: &Civil) -> u32 {
    match field {
        YEAR => MAX_YEAR as u32,
        MONTH => 12,
        DAY => days_in_month(civil.year, civil.month),
        WEEK => 53,
        WEEKDAY => 6,
        HOUR => 23,
        _ => 59,
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from > 63 {
        return None;
    }
    let above = mask & (u64::MAX << from);
    (above != 0).then(|| above.trailing_zeros())
}

impl CronSchedule {
    /// Whether the hour field matches all 24 hours, which makes the schedule fire in
    /// both passes of a fall-back fold (docs/semantics.md, "DST").
    pub(crate) fn matches_every_hour(&self) -> bool {
        self.hours & bits(0, 23) == bits(0, 23)
    }

    /// The smallest matching civil date-time at or after `from` (whole seconds), or
    /// `None` if there is none before year 9999 or before `limit`.
    pub(crate) fn next_match(
        &self,
        from: NaiveDateTime,
        limit: Option<NaiveDateTime>,
    ) -> Option<NaiveDateTime> {
        let mut civil = Civil::from_naive(from);
        if civil.year < MIN_YEAR {
            civil = Civil {
                year: MIN_YEAR,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
            };
        }
        if civil.year > MAX_YEAR {
            return None;
        }
        let limit = limit.map(Civil::from_naive);
        let mut field = 0usize;
        while field < 8 {
            let current = self.value(field, &civil);
            match self.next_value(field, &civil, current) {
                None => {
                    // Nothing left in this field: carry into the next coarser one.
                    (civil, field) = increment(&civil, field.checked_sub(1)?)?;
                }
                Some(next) if next > current => {
                    if is_real(field) {
                        civil.set(field, next);
                        reset_finer(&mut civil, field);
                        field += 1;
                    } else {
                        (civil, field) = increment(&civil, field)?;
                    }
                }
                Some(_) => field += 1,
            }
            if limit.is_some_and(|limit| civil > limit) {
                return None;
            }
        }
        civil.to_naive()
    }

    fn value(&self, field: usize, civil: &Civil) -> u32 {
        match field {
            WEEK if self.weeks != bits(1, 53) => {
                NaiveDate::from_ymd_opt(civil.year, civil.month, civil.day)
                    .map_or(1, |date| date.iso_week().week())
            }
            WEEKDAY if self.weekdays != bits(0, 6) => weekday(civil.year, civil.month, civil.day),
            // An unrestricted week or weekday always matches; its value does not matter.
            WEEK | WEEKDAY => 0,
            _ => civil.get(field),
        }
    }

    /// APScheduler's `get_next_value`: the smallest allowed value of `field` at or above
    /// its current value, within the field's bounds for this date.
    fn next_value(&self, field: usize, civil: &Civil, current: u32) -> Option<u32> {
        let from = current.max(field_min(field));
        let max = field_max(field, civil);
        let next = match field {
            YEAR => self
                .years
                .iter()
                .filter_map(|item| next_year(item, from))
                .min(),
            MONTH => next_bit(self.months, from),
            DAY => next_bit(self.days.mask(civil.year, civil.month, max), from),
            WEEK if self.weeks == bits(1, 53) => Some(current),
            WEEK => next_bit(self.weeks, from),
            WEEKDAY if self.weekdays == bits(0, 6) => Some(current),
            WEEKDAY => next_bit(self.weekdays, from),
            HOUR => next_bit(self.hours, from),
            MINUTE => next_bit(self.minutes, from),
            SECOND => next_bit(self.seconds, from),
            _ => None,
        };
        next.filter(|value| *value <= max)
    }
}

/// The next year at or after `from` that a year item allows.
fn next_year(item: &Item, from: u32) -> Option<u32> {
    let Item::Range { first, last, step } = *item else {
        return None;
    };
    let mut value = from.max(first);
    let offset = (value - first) % step;
    if offset != 0 {
        value += step - offset;
    }
    (value <= last.unwrap_or(MAX_YEAR as u32)).then_some(value)
}

/// APScheduler's `_increment_field_value`: add one to `field` (or, when it is at its
/// maximum or not settable, to the nearest coarser real field) and reset every finer
/// real field to its minimum. Returns the field that was actually incremented.
fn increment(civil: &Civil, mut field: usize) -> Option<(Civil, usize)> {
    loop {
        if is_real(field) && civil.get(field) < field_max(field, civil) {
            break;
        }
        field = field.checked_sub(1)?;
    }
    let mut next = *civil;
    next.set(field, civil.get(field) + 1);
    reset_finer(&mut next, field);
    Some((next, field))
}

fn reset_finer(civil: &mut Civil, field: usize) {
    for finer in field + 1..8 {
        if is_real(finer) {
            civil.set(finer, field_min(finer));
        }
    }
}

pub(crate) fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` of `year`.
pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// The weekday of a date, Monday = 0 (Howard Hinnant's days-from-civil).
pub(crate) fn weekday(year: i32, month: u32, day: u32) -> u32 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days_since_epoch = era * 146_097 + day_of_era - 719_468;
    // 1970-01-01 was a Thursday (3 when Monday = 0).
    (days_since_epoch + 3).rem_euclid(7) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    #[test]
    fn weekday_agrees_with_chrono() {
        let mut date = NaiveDate::from_ymd_opt(1899, 1, 1).expect("date");
        while date.year() < 2101 {
            assert_eq!(
                weekday(date.year(), date.month(), date.day()),
                date.weekday().num_days_from_monday(),
                "{date}"
            );
            date = date.succ_opt().expect("date");
        }
        assert_eq!(weekday(2024, 11, 24), Weekday::Sun.num_days_from_monday());
    }

    #[test]
    fn days_in_month_knows_leap_years() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2024, 4), 30);
    }

    #[test]
    fn day_positions_follow_apscheduler() {
        // November 2024 starts on a Friday and has 30 days.
        let set = DaySet {
            positions: vec![(0, 4), (5, 4), (4, 5), (4, 0)],
            ..DaySet::default()
        };
        let mask = set.mask(2024, 11, 30);
        let days: Vec<u32> = (1..=30).filter(|day| mask & (1 << day) != 0).collect();
        // 1st fri = 1, last fri = 29, 5th sat = 30, 5th mon does not exist.
        assert_eq!(days, [1, 29, 30]);
    }

    #[test]
    fn weekday_or_set_marks_every_occurrence() {
        let set = DaySet {
            weekdays: 1 << 6, // Sundays
            ..DaySet::default()
        };
        let mask = set.mask(2024, 11, 30);
        let days: Vec<u32> = (1..=30).filter(|day| mask & (1 << day) != 0).collect();
        assert_eq!(days, [3, 10, 17, 24]);
    }

    #[test]
    fn bits_sets_inclusive_ranges() {
        assert_eq!(bits(0, 0), 1);
        assert_eq!(bits(1, 3), 0b1110);
        assert_eq!(bits(0, 63), u64::MAX);
    }
}
