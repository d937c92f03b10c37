//! Durations as users write them (`30s`, `1h30m`, `1.5`): the input is the value of a
//! `delay=` word, the parser config files, the API and `kairos next` share. Checks: no
//! panic, and a duration read back from the JSON kairos writes for it is the same.
#![no_main]

use kairos::trigger::words::spec_from_words;
use kairos::TriggerSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = kairos_fuzz::text(data) else {
        return;
    };
    let Ok(spec) = spec_from_words("date", &[format!("delay={text}")]) else {
        return;
    };
    let json = match serde_json::to_string(&spec) {
        Ok(json) => json,
        Err(error) => panic!("{text:?}: {spec:?} does not serialize: {error}"),
    };
    match serde_json::from_str::<TriggerSpec>(&json) {
        Ok(again) => assert_eq!(again, spec, "{text:?} written as {json}"),
        Err(error) => panic!("{text:?} written as {json} does not read back: {error}"),
    }
    kairos_fuzz::build_and_check(spec);
});
