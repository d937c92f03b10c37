//! Jobs built directly, without a scheduler, for the benches that measure a store.

use chrono::{DateTime, Utc};
use kairos::job::Job;
use kairos::trigger::{DateSpec, Trigger, TriggerContext, TriggerSpec};

/// A one-off job of the `record` task due at `at`, named after its id.
pub fn one_off(id: String, at: DateTime<Utc>) -> Job {
    let spec = TriggerSpec::Date(DateSpec {
        run_date: Some(at.to_rfc3339()),
        ..DateSpec::default()
    });
    Job {
        trigger: Trigger::new(spec, &TriggerContext::new(at)).expect("a valid trigger"),
        name: id.clone(),
        id,
        task: "record".to_owned(),
        args: serde_json::Value::Null,
        executor: "default".to_owned(),
        misfire_grace_time: None,
        coalesce: true,
        max_instances: 1,
        overlap: Default::default(),
        jitter: None,
        paused: false,
        next_run_time: Some(at),
        revision: 0,
        config_spec: None,
        config_version: None,
        retry: Default::default(),
        expect_success: None,
    }
}
