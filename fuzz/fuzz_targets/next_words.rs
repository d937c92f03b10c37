//! The words `kairos next`, `kairos jobs add` and the web page's preview take, as one
//! shell-like line: `cron hour=3 minute=30`, `crontab "0 3 * * *" timezone=UTC`.
//! Checks: no panic; a line that builds a trigger reads back to the same spec from the
//! words kairos writes for it (`kairos jobs list`), and its fire times strictly
//! increase.
#![no_main]

use kairos::trigger::words::{spec_from_line, spec_to_words};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(line) = kairos_fuzz::text(data) else {
        return;
    };
    let Ok(spec) = spec_from_line(line) else {
        return;
    };
    if kairos_fuzz::build_and_check(spec.clone()).is_none() {
        return;
    }
    let words = spec_to_words(&spec);
    match spec_from_line(&words) {
        Ok(again) => assert_eq!(again, spec, "{line:?} written as {words:?}"),
        Err(error) => panic!("{line:?} written as {words:?} does not read back: {error}"),
    }
});
