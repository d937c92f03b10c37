//! Triggers as JSON, as the API takes them (`{"type": "cron", "hour": 3}`, nested
//! `and`/`or`): deserialize, build, and list a few fire times. Checks: no panic, no
//! stall (a combination gives up within its evaluation budget), fire times strictly
//! increase and none lies before the instant asked (but a `date` trigger's own run).
#![no_main]

use kairos::TriggerSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<TriggerSpec>(data) else {
        return;
    };
    kairos_fuzz::build_and_check(spec);
});
