//! How the memory store keeps a job: a [`Job`] with its strings shared and its args as
//! JSON text, so a million pending one-off jobs cost a few hundred bytes each, not a
//! kilobyte (issue 9, memory per pending job).
//!
//! | field of [`Job`] | kept as |
//! | --- | --- |
//! | `id` | `Arc<str>`, the same allocation the store's indexes hold |
//! | `task`, `executor` | one pointer to the pair, interned per store: a handful of pairs shared by every job |
//! | `name`, `misfire_grace_time`, `jitter`, `config_spec`, `config_version` | one pointer, null when all are at their usual values (the name is the task's, no limit, no jitter, not from config) |
//! | `args` | nothing when null, else compact JSON text (`{"order_id":42}` is 15 bytes; a `Value` map is a B-tree node of over 500) |
//! | `trigger` | as is: a `date` trigger is inline, others share one allocation |
//!
//! # Ground rules
//! - [`StoredJob::to_job`] gives back exactly the job that was stored (`args` round-trip
//!   through serde_json, which writes numbers so they read back the same).
//! - Args nested too deep for serde_json's reader (128 levels) are kept as a `Value`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::job::{ConfigVersion, Job, JobSpec};
use crate::trigger::Trigger;

/// serde_json's reader refuses deeper nesting than 128; stay clear of it.
const MAX_TEXT_DEPTH: usize = 100;

/// A job as the memory store keeps it; see the module docs.
#[derive(Debug)]
pub(super) struct StoredJob {
    pub(super) id: Arc<str>,
    names: Arc<TaskAndExecutor>,
    args: StoredArgs,
    trigger: Trigger,
    pub(super) next_run_time: Option<DateTime<Utc>>,
    pub(super) revision: u64,
    /// `None`: every field of [`Rare`] at its usual value.
    rare: Option<Box<Rare>>,
    max_instances: u32,
    coalesce: bool,
    paused: bool,
}

/// The interned task and executor names of a job.
#[derive(Debug)]
struct TaskAndExecutor {
    task: Box<str>,
    executor: Box<str>,
}

/// The fields that most jobs leave at their usual values.
#[derive(Debug)]
struct Rare {
    /// `None`: the task's name.
    name: Option<Box<str>>,
    misfire_grace_time: Option<Duration>,
    jitter: Option<Duration>,
    config_spec: Option<Box<JobSpec>>,
    config_version: Option<ConfigVersion>,
}

#[derive(Debug)]
enum StoredArgs {
    Null,
    /// Compact JSON text.
    Text(Box<str>),
    /// Too deep to read back from text.
    Deep(Box<Value>),
}

/// The (task, executor) pairs of a store's jobs, one allocation each.
#[derive(Debug, Default)]
pub(super) struct Names {
    /// By task, then the few executors its jobs use.
    pairs: HashMap<Box<str>, Vec<Arc<TaskAndExecutor>>>,
    /// The pair of the last job stored: jobs come in runs of the same task (a shop
    /// adding cancel jobs), and two string compares cost less than a hash lookup.
    last: Option<Arc<TaskAndExecutor>>,
}

impl Names {
    /// The shared pair. Tasks and executors are registered names, a few per scheduler,
    /// so the map stays small and is never pruned.
    fn intern(&mut self, task: &str, executor: &str) -> Arc<TaskAndExecutor> {
        if let Some(last) = &self.last {
            if &*last.task == task && &*last.executor == executor {
                return Arc::clone(last);
            }
        }
        let pair = self.lookup(task, executor);
        self.last = Some(Arc::clone(&pair));
        pair
    }

    fn lookup(&mut self, task: &str, executor: &str) -> Arc<TaskAndExecutor> {
        if let Some(pair) = self
            .pairs
            .get(task)
            .and_then(|pairs| pairs.iter().find(|pair| &*pair.executor == executor))
        {
            return Arc::clone(pair);
        }
        let pair = Arc::new(TaskAndExecutor {
            task: task.into(),
            executor: executor.into(),
        });
        self.pairs
            .entry(task.into())
            .or_default()
            .push(Arc::clone(&pair));
        pair
    }
}

impl StoredJob {
    /// The stored form of `job`.
    pub(super) fn new(job: &Job, names: &mut Names) -> StoredJob {
        let rare = Rare {
            name: (job.name != job.task).then(|| job.name.as_str().into()),
            misfire_grace_time: job.misfire_grace_time,
            jitter: job.jitter,
            config_spec: job.config_spec.clone(),
            config_version: job.config_version.clone(),
        };
        let usual = rare.name.is_none()
            && rare.misfire_grace_time.is_none()
            && rare.jitter.is_none()
            && rare.config_spec.is_none()
            && rare.config_version.is_none();
        StoredJob {
            id: Arc::from(job.id.as_str()),
            names: names.intern(&job.task, &job.executor),
            args: StoredArgs::new(&job.args),
            trigger: job.trigger.clone(),
            next_run_time: job.next_run_time,
            revision: job.revision,
            rare: (!usual).then(|| Box::new(rare)),
            max_instances: job.max_instances,
            coalesce: job.coalesce,
            paused: job.paused,
        }
    }

    /// The job it was made from.
    pub(super) fn to_job(&self) -> Job {
        let rare = self.rare.as_deref();
        let task = &*self.names.task;
        Job {
            id: self.id.to_string(),
            name: rare
                .and_then(|rare| rare.name.as_deref())
                .unwrap_or(task)
                .to_owned(),
            task: task.to_owned(),
            args: self.args.to_value(),
            trigger: self.trigger.clone(),
            executor: self.names.executor.to_string(),
            misfire_grace_time: rare.and_then(|rare| rare.misfire_grace_time),
            coalesce: self.coalesce,
            max_instances: self.max_instances,
            jitter: rare.and_then(|rare| rare.jitter),
            paused: self.paused,
            next_run_time: self.next_run_time,
            revision: self.revision,
            config_spec: rare.and_then(|rare| rare.config_spec.clone()),
            config_version: rare.and_then(|rare| rare.config_version.clone()),
        }
    }
}

impl StoredArgs {
    fn new(args: &Value) -> StoredArgs {
        if args.is_null() {
            return StoredArgs::Null;
        }
        if depth(args) > MAX_TEXT_DEPTH {
            return StoredArgs::Deep(Box::new(args.clone()));
        }
        match serde_json::to_string(args) {
            Ok(text) => StoredArgs::Text(text.into_boxed_str()),
            // A `Value` always serializes; keep it as it is all the same.
            Err(_) => StoredArgs::Deep(Box::new(args.clone())),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            StoredArgs::Null => Value::Null,
            // Written by serde_json from a `Value` no deeper than MAX_TEXT_DEPTH, so it
            // reads back; `Null` would only hide a bug, hence the log.
            StoredArgs::Text(text) => serde_json::from_str(text).unwrap_or_else(|error| {
                tracing::error!(%error, "stored job args did not read back");
                Value::Null
            }),
            StoredArgs::Deep(value) => (**value).clone(),
        }
    }
}

/// How deeply arrays and objects nest in `value` (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{TriggerContext, TriggerSpec};
    use serde_json::json;

    fn job(args: Value, name: &str) -> Job {
        let spec: TriggerSpec =
            serde_json::from_value(json!({"type": "date", "run_date": "2030-01-01T00:00:00Z"}))
                .expect("a date spec");
        let trigger = Trigger::new(spec, &TriggerContext::new(Utc::now())).expect("valid");
        Job {
            id: "order-cancel-42".to_owned(),
            name: name.to_owned(),
            task: "orders.cancel".to_owned(),
            args,
            next_run_time: trigger.next_fire_time(None, Utc::now()),
            trigger,
            executor: "default".to_owned(),
            misfire_grace_time: Some(Duration::from_secs(30)),
            coalesce: true,
            max_instances: 1,
            jitter: None,
            paused: false,
            revision: 7,
            config_spec: None,
            config_version: None,
        }
    }

    #[test]
    fn a_stored_job_reads_back_the_same() {
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let mut names = Names::default();
        for args in [
            Value::Null,
            json!({"order_id": 42, "f": 0.1, "big": u64::MAX, "s": "é\n"}),
            deep,
        ] {
            for name in ["orders.cancel", "cancel order 42"] {
                let original = job(args.clone(), name);
                assert_eq!(StoredJob::new(&original, &mut names).to_job(), original);
            }
        }
    }

    #[test]
    fn task_and_executor_names_are_shared() {
        // Not a test of layout, but a million pending jobs pay for every byte here.
        assert!(std::mem::size_of::<StoredJob>() <= 112);
        let mut names = Names::default();
        let first = StoredJob::new(&job(Value::Null, "orders.cancel"), &mut names);
        let second = StoredJob::new(&job(Value::Null, "orders.cancel"), &mut names);
        assert!(Arc::ptr_eq(&first.names, &second.names));
        assert!(first.rare.is_some(), "a misfire grace time is rare");
    }
}
