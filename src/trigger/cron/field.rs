//! Parsing one calendar field (`*/15`, `mon-fri`, `1st mon`, `last`, `1,15`) into the
//! set of values it matches.
//!
//! The grammar is APScheduler 3.x's (`triggers/cron/expressions.py`), shared with the
//! crontab parser, which only swaps the bounds and the names through [`FieldSyntax`].
//! Every value set is compiled to a bitmask once, so the next-time search never
//! re-reads an expression.

use crate::trigger::TriggerError;

/// The lexical rules of one field: its name in errors, its bounds, its names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldSyntax {
    /// The name errors use: `hour`, `crontab minute`.
    pub name: &'static str,
    /// The smallest value the field accepts.
    pub min: u32,
    /// The largest value the field accepts.
    pub max: u32,
    /// Names for values (`jan` = 1): the value of `names[i]` is `names_base + i`.
    pub names: &'static [&'static str],
    /// The same names written in full (`january`), aligned with `names`.
    pub full_names: &'static [&'static str],
    /// The value of the first name.
    pub names_base: u32,
    /// What a name is, in errors: `month`, `weekday`.
    pub name_kind: &'static str,
    /// APScheduler rejects a step larger than the range it steps over; Vixie cron does not.
    pub reject_large_step: bool,
    /// Whether `last`, `last fri` and `2nd mon` are allowed (APScheduler's day field).
    pub positions: bool,
}

/// Month names, also accepted in full (`january`).
pub(crate) const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
pub(crate) const MONTH_FULL_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
/// Weekday names as APScheduler numbers them: 0 = Monday.
pub(crate) const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
pub(crate) const WEEKDAY_FULL_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// Weekday names as crontab numbers them: 0 = Sunday.
pub(crate) const CRONTAB_WEEKDAY_NAMES: [&str; 7] =
    ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// Full weekday names in crontab order.
pub(crate) const CRONTAB_WEEKDAY_FULL_NAMES: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// One item of a comma-separated list, after parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `first..=last` every `step`; `last = None` means "up to the field's maximum".
    Range {
        first: u32,
        last: Option<u32>,
        step: u32,
    },
    /// `last`: the last day of the month.
    LastDay,
    /// `2nd mon`, `last fri`: `nth` is 0..=4 for 1st..5th and 5 for last; weekday 0 = Monday.
    Position { nth: u8, weekday: u8 },
}

impl Item {
    /// The mask of values this range item matches, within `min..=max` (bit n = value n).
    pub(crate) fn mask(&self, min: u32, max: u32) -> u64 {
        let Item::Range { first, last, step } = *self else {
            return 0;
        };
        let last = last.unwrap_or(max).min(max);
        let mut mask = 0u64;
        let mut value = first.max(min);
        // Steps count from `first`, as in APScheduler's RangeExpression.
        if value > first {
            let offset = (value - first) % step;
            if offset != 0 {
                value += step - offset;
            }
        }
        while value <= last && value < 64 {
            mask |= 1 << value;
            value += step;
        }
        mask
    }
}

/// Parses a whole field into its items.
pub(crate) fn parse_items(syntax: &FieldSyntax, text: &str) -> Result<Vec<Item>, TriggerError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TriggerError::syntax(syntax.name, "the value is empty"));
    }
    trimmed
        .split(',')
        .map(|part| {
            let part = part.trim();
            if part.is_empty() {
                Err(TriggerError::syntax(
                    syntax.name,
                    format!("empty item in the list {trimmed:?}"),
                ))
            } else {
                parse_item(syntax, part)
            }
        })
        .collect()
}

fn parse_item(syntax: &FieldSyntax, part: &str) -> Result<Item, TriggerError> {
    let lower = part.to_ascii_lowercase();
    if syntax.positions {
        if let Some(item) = parse_position(syntax, &lower)? {
            return Ok(item);
        }
    }
    let (range, step) = match lower.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(syntax, part, step)?)),
        None => (lower.as_str(), None),
    };
    let (first, last) = if range == "*" {
        (syntax.min, Some(syntax.max))
    } else if let Some((first, last)) = range.split_once('-') {
        let first = parse_value(syntax, part, first)?;
        let last = parse_value(syntax, part, last)?;
        if first > last {
            return Err(TriggerError::out_of_range(
                syntax.name,
                format!("the range {part:?} runs backwards (write {last}-{first})"),
            ));
        }
        (first, Some(last))
    } else {
        let value = parse_value(syntax, part, range)?;
        // `5/10` means from 5 to the maximum every 10 (APScheduler and cronie agree).
        (value, if step.is_some() { None } else { Some(value) })
    };
    let step = step.unwrap_or(1);
    if syntax.reject_large_step && step > 1 {
        let span = last.unwrap_or(syntax.max).saturating_sub(first);
        if step > span {
            return Err(TriggerError::out_of_range(
                syntax.name,
                format!(
                    "the step {step} in {part:?} is larger than the range it steps over ({span})"
                ),
            ));
        }
    }
    Ok(Item::Range { first, last, step })
}

fn parse_step(syntax: &FieldSyntax, part: &str, text: &str) -> Result<u32, TriggerError> {
    let step = parse_number(text).ok_or_else(|| {
        TriggerError::syntax(
            syntax.name,
            format!("the step in {part:?} is not a whole number"),
        )
    })?;
    if step == 0 {
        return Err(TriggerError::out_of_range(
            syntax.name,
            format!("the step in {part:?} must be at least 1"),
        ));
    }
    Ok(step)
}

/// A number or, where the field has names, a name; checked against the bounds.
fn parse_value(syntax: &FieldSyntax, part: &str, text: &str) -> Result<u32, TriggerError> {
    if let Some(number) = parse_number(text) {
        if number < syntax.min || number > syntax.max {
            return Err(TriggerError::out_of_range(
                syntax.name,
                format!("{number} is out of range {}-{}", syntax.min, syntax.max),
            ));
        }
        return Ok(number);
    }
    if !syntax.names.is_empty() && !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return name_value(syntax, text).ok_or_else(|| {
            TriggerError::unknown_name(
                syntax.name,
                format!("unknown {} {text:?}", syntax.name_kind),
            )
        });
    }
    Err(TriggerError::syntax(
        syntax.name,
        format!("cannot read {part:?} (expected {})", expected_forms(syntax)),
    ))
}

fn name_value(syntax: &FieldSyntax, text: &str) -> Option<u32> {
    let index_in = |names: &[&str]| names.iter().position(|name| *name == text);
    index_in(syntax.names)
        .or_else(|| index_in(syntax.full_names))
        .map(|index| index as u32 + syntax.names_base)
}

fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `last`, `last fri`, `1st mon` … `5th sun` (APScheduler's day field).
fn parse_position(syntax: &FieldSyntax, lower: &str) -> Result<Option<Item>, TriggerError> {
    if lower == "last" {
        return Ok(Some(Item::LastDay));
    }
    let Some((position, weekday)) = lower.split_once(' ') else {
        return Ok(None);
    };
    let nth = match position {
        "1st" => 0,
        "2nd" => 1,
        "3rd" => 2,
        "4th" => 3,
        "5th" => 4,
        "last" => 5,
        _ => {
            return Err(TriggerError::syntax(
                syntax.name,
                format!("unknown position {position:?} (expected 1st, 2nd, 3rd, 4th, 5th or last)"),
            ))
        }
    };
    let weekday = weekday.trim();
    let index = WEEKDAY_NAMES
        .iter()
        .position(|name| *name == weekday)
        .or_else(|| WEEKDAY_FULL_NAMES.iter().position(|name| *name == weekday))
        .ok_or_else(|| {
            TriggerError::unknown_name(syntax.name, format!("unknown weekday {weekday:?}"))
        })?;
    Ok(Some(Item::Position {
        nth,
        weekday: index as u8,
    }))
}

fn expected_forms(syntax: &FieldSyntax) -> String {
    let mut forms = String::from("*, */N, N, N-M, N-M/S or a comma-separated list of them");
    if !syntax.names.is_empty() {
        forms.push_str(&format!(
            ", with {} names such as {}",
            syntax.name_kind, syntax.names[0]
        ));
    }
    if syntax.positions {
        forms.push_str(", last, \"last fri\" or \"2nd mon\"");
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: FieldSyntax = FieldSyntax {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        full_names: &[],
        names_base: 0,
        name_kind: "",
        reject_large_step: true,
        positions: false,
    };

    fn mask_of(text: &str) -> Vec<u32> {
        let items = parse_items(&HOUR, text).expect(text);
        let mask = items.iter().fold(0, |mask, item| mask | item.mask(0, 23));
        (0..24).filter(|hour| mask & (1 << hour) != 0).collect()
    }

    #[test]
    fn every_form_of_range() {
        assert_eq!(mask_of("*").len(), 24);
        assert_eq!(mask_of("*/6"), [0, 6, 12, 18]);
        assert_eq!(mask_of("3"), [3]);
        assert_eq!(mask_of("3-5"), [3, 4, 5]);
        assert_eq!(mask_of("3-12/4"), [3, 7, 11]);
        assert_eq!(mask_of("5/6"), [5, 11, 17, 23]);
        assert_eq!(mask_of("1, 2 ,20-21"), [1, 2, 20, 21]);
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let error = |text: &str| parse_items(&HOUR, text).expect_err(text).to_string();
        assert_eq!(error("25"), "hour: 25 is out of range 0-23");
        assert_eq!(
            error("5-3"),
            "hour: the range \"5-3\" runs backwards (write 3-5)"
        );
        assert_eq!(error("*/0"), "hour: the step in \"*/0\" must be at least 1");
        assert!(error("*/24").starts_with("hour: the step 24"));
        assert!(error("1,,2").starts_with("hour: empty item"));
        assert!(error("x").starts_with("hour: cannot read \"x\""));
        assert!(error("").starts_with("hour: the value is empty"));
    }
}
