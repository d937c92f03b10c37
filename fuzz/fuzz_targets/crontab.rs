//! `crontab` lines (Vixie cron: five fields, names, steps, `@daily` and friends), the
//! whole input as the expression. Checks: no panic, and the fire times of a valid line
//! strictly increase from the instant asked.
#![no_main]

use kairos::trigger::CrontabSpec;
use kairos::TriggerSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = kairos_fuzz::text(data) else {
        return;
    };
    let spec = CrontabSpec {
        expression: text.to_owned(),
        ..CrontabSpec::default()
    };
    kairos_fuzz::build_and_check(TriggerSpec::Crontab(Box::new(spec)));
});
