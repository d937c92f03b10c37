//! `cron` triggers' fields (APScheduler 3.x syntax): one field per input line, in the
//! order year, month, day, week, day_of_week, hour, minute, second; an empty line
//! leaves the field out. Checks: no panic, and the fire times of a valid expression
//! strictly increase from the instant asked.
#![no_main]

use kairos::trigger::CronSpec;
use kairos::TriggerSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = kairos_fuzz::text(data) else {
        return;
    };
    let mut lines = text.split('\n').map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        (!line.is_empty()).then(|| line.to_owned())
    });
    let mut next = || lines.next().flatten();
    let spec = CronSpec {
        year: next(),
        month: next(),
        day: next(),
        week: next(),
        day_of_week: next(),
        hour: next(),
        minute: next(),
        second: next(),
        ..CronSpec::default()
    };
    kairos_fuzz::build_and_check(TriggerSpec::Cron(Box::new(spec)));
});
