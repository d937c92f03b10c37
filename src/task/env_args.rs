//! `${NAME}` in job args, resolved when a run starts from the variables the config
//! allows (`[tasks] env_allow`), so a secret lives in the daemon's environment only:
//! never in the store, the API's answers, the events or the run history, which all
//! keep the text as written.
//!
//! Every string in the args (in arrays and objects, at any depth; keys stay as they
//! are) has each `${NAME}` replaced by the variable's value; `$${` stands for a
//! literal `${`. A name that is not allowed, a variable that is not set, or a `${`
//! without its `}` fails the run with an error naming it: a secret is never silently
//! empty. README.md ("Secrets in job args") shows it from the operator's side.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Task, TaskFailure, TaskRun};

/// Why a run's args could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvArgsError {
    /// `${NAME}` names a variable `[tasks] env_allow` does not list.
    #[error("args: ${{{0}}} is not allowed: list {0} in [tasks] env_allow to use it")]
    NotAllowed(String),
    /// `${NAME}` is allowed but not set in the daemon's environment.
    #[error("args: ${{{0}}}: the environment variable {0} is not set")]
    Unset(String),
    /// `${` without a closing `}`, or with a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("args: {0:?} has a ${{…}} that is unfinished or not a variable name (write $${{ for a literal ${{)")]
    Malformed(String),
}

/// Whether a variable name is `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Whether any string in `args` holds a `${` (resolving then has work to do).
fn has_placeholder(args: &Value) -> bool {
    match args {
        Value::String(text) => text.contains("${"),
        Value::Array(items) => items.iter().any(has_placeholder),
        Value::Object(fields) => fields.values().any(has_placeholder),
        _ => false,
    }
}

/// `args` with every `${NAME}` resolved by `lookup` if `allowed` lists NAME.
pub fn resolve_args(
    args: &Value,
    allowed: &BTreeSet<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, EnvArgsError> {
    Ok(match args {
        Value::String(text) => Value::String(resolve_text(text, allowed, lookup)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve_args(item, allowed, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| Ok((key.clone(), resolve_args(value, allowed, lookup)?)))
                .collect::<Result<_, EnvArgsError>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_text(
    text: &str,
    allowed: &BTreeSet<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvArgsError> {
    let mut resolved = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        resolved.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            resolved.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let name = tail
                .find('}')
                .map(|end| &tail[..end])
                .filter(|name| is_variable_name(name))
                .ok_or_else(|| EnvArgsError::Malformed(text.to_owned()))?;
            if !allowed.contains(name) {
                return Err(EnvArgsError::NotAllowed(name.to_owned()));
            }
            let value = lookup(name).ok_or_else(|| EnvArgsError::Unset(name.to_owned()))?;
            resolved.push_str(&value);
            rest = &tail[name.len() + 1..];
        } else {
            resolved.push('$');
            rest = &after[1..];
        }
    }
    resolved.push_str(rest);
    Ok(resolved)
}

/// A task whose runs get their args resolved first ([`super::TaskRegistry::runnable`]).
pub(crate) struct ResolvedArgsTask {
    pub(crate) inner: Arc<dyn Task>,
    pub(crate) allowed: Arc<BTreeSet<String>>,
}

#[async_trait]
impl Task for ResolvedArgsTask {
    fn check_args(&self, args: &Value) -> Result<(), String> {
        self.inner.check_args(args)
    }

    async fn run(&self, run: TaskRun) -> Result<String, TaskFailure> {
        let run = self.prepare_run(run)?;
        self.inner.run(run).await
    }

    fn prepare_run(&self, mut run: TaskRun) -> Result<TaskRun, TaskFailure> {
        if has_placeholder(&run.args) {
            run.args = resolve_args(&run.args, &self.allowed, &|name| std::env::var(name).ok())
                .map_err(|error| TaskFailure::new(error.to_string()))?;
        }
        Ok(run)
    }

    fn settings(&self) -> Option<Value> {
        self.inner.settings()
    }

    fn default_retry(&self) -> Option<crate::job::RetryPolicy> {
        self.inner.default_retry()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn allowed() -> BTreeSet<String> {
        ["DB_PASSWORD", "TOKEN", "EMPTY"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn lookup(name: &str) -> Option<String> {
        match name {
            "DB_PASSWORD" => Some("s3cret".to_owned()),
            "TOKEN" => Some("t0k".to_owned()),
            "EMPTY" => Some(String::new()),
            "HOME" => Some("/root".to_owned()),
            _ => None,
        }
    }

    fn resolve(args: Value) -> Result<Value, EnvArgsError> {
        resolve_args(&args, &allowed(), &lookup)
    }

    #[test]
    fn strings_at_any_depth_are_resolved_and_keys_and_other_values_kept() {
        let args = json!({
            "url": "mysql://app:${DB_PASSWORD}@db/shop",
            "headers": {"Authorization": "Bearer ${TOKEN}", "${TOKEN}": 1},
            "argv": ["sh", "-c", "echo ${TOKEN}${TOKEN}"],
            "n": 3, "on": true, "none": null,
        });
        assert_eq!(
            resolve(args),
            Ok(json!({
                "url": "mysql://app:s3cret@db/shop",
                "headers": {"Authorization": "Bearer t0k", "${TOKEN}": 1},
                "argv": ["sh", "-c", "echo t0kt0k"],
                "n": 3, "on": true, "none": null,
            }))
        );
        assert_eq!(resolve(json!("${EMPTY}")), Ok(json!("")));
    }

    #[test]
    fn a_doubled_dollar_is_a_literal_and_lone_dollars_stay() {
        assert_eq!(
            resolve(json!("echo $${HOME} $HOME $ $$ cost$5 ${TOKEN}")),
            Ok(json!("echo ${HOME} $HOME $ $$ cost$5 t0k"))
        );
        // Read left to right: `$`, then the escape `$${`.
        assert_eq!(resolve(json!("$$${TOKEN}")), Ok(json!("$${TOKEN}")));
    }

    #[test]
    fn disallowed_unset_and_malformed_variables_fail_naming_them() {
        assert_eq!(
            resolve(json!({"cmd": "echo ${HOME}"})),
            Err(EnvArgsError::NotAllowed("HOME".to_owned()))
        );
        let mut more = allowed();
        more.insert("MISSING".to_owned());
        assert_eq!(
            resolve_args(&json!(["${MISSING}"]), &more, &lookup),
            Err(EnvArgsError::Unset("MISSING".to_owned()))
        );
        for bad in ["${TOKEN", "${}", "${A-B}", "${1X}"] {
            assert!(
                matches!(resolve(json!(bad)), Err(EnvArgsError::Malformed(text)) if text == bad),
                "{bad}"
            );
        }
        let message = EnvArgsError::NotAllowed("HOME".to_owned()).to_string();
        assert!(
            message.contains("${HOME}") && message.contains("env_allow"),
            "{message}"
        );
    }

    #[test]
    fn variable_names_are_identifiers() {
        for good in ["A", "_x", "DB_PASSWORD_2"] {
            assert!(is_variable_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_task_sees_resolved_args_and_the_run_fails_on_a_disallowed_one() {
        let mut tasks = super::super::TaskRegistry::new();
        tasks.register_fn("echo", |run: TaskRun| async move {
            Ok::<_, TaskFailure>(run.args.to_string())
        });
        std::env::set_var("KAIROS_ENV_ARGS_UNIT_TEST", "from-env");
        tasks.allow_env(["KAIROS_ENV_ARGS_UNIT_TEST".to_owned()]);
        let task = tasks
            .runnable("echo")
            .unwrap_or_else(|| panic!("registered"));
        let run = |args: Value| TaskRun {
            job_id: "j".to_owned(),
            run_id: "r".to_owned(),
            scheduled_time: chrono::Utc::now(),
            args,
            from_config: false,
        };
        let output = task.run(run(json!(["${KAIROS_ENV_ARGS_UNIT_TEST}"]))).await;
        assert_eq!(output, Ok("[\"from-env\"]".to_owned()));
        let failure = task.run(run(json!("${PATH}"))).await.err();
        assert!(failure.is_some_and(|failure| failure.message.contains("${PATH} is not allowed")),);
        // Args without `${` go through untouched, whatever the list.
        assert_eq!(
            task.run(run(json!(["$HOME"]))).await,
            Ok("[\"$HOME\"]".to_owned())
        );
    }

    /// The runnable wrappers are made ahead of the runs, so they must follow every
    /// change: a task registered after `allow_env`, a task replaced under its name, and
    /// `allow_env` given again.
    #[tokio::test]
    async fn the_runnable_task_follows_registrations_and_the_allowed_variables() {
        let mut tasks = super::super::TaskRegistry::new();
        std::env::set_var("KAIROS_ENV_ARGS_ORDER_TEST", "from-env");
        tasks.allow_env(["KAIROS_ENV_ARGS_ORDER_TEST".to_owned()]);
        tasks.register_fn("echo", |_: TaskRun| async move {
            Ok::<_, TaskFailure>("the first task".to_owned())
        });
        tasks.register_fn("echo", |run: TaskRun| async move {
            Ok::<_, TaskFailure>(run.args.to_string())
        });
        let run = || TaskRun {
            job_id: "j".to_owned(),
            run_id: "r".to_owned(),
            scheduled_time: chrono::Utc::now(),
            args: json!(["${KAIROS_ENV_ARGS_ORDER_TEST}"]),
            from_config: false,
        };
        let task = tasks
            .runnable("echo")
            .unwrap_or_else(|| panic!("registered"));
        assert_eq!(task.run(run()).await, Ok("[\"from-env\"]".to_owned()));
        tasks.allow_env(Vec::new());
        let task = tasks
            .runnable("echo")
            .unwrap_or_else(|| panic!("registered"));
        let failure = task.run(run()).await.err();
        assert!(failure.is_some_and(|failure| failure.message.contains("is not allowed")));
        assert!(tasks.runnable("missing").is_none());
    }
}
