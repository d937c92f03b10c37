//! How the memory store keeps a job: a [`Job`] with its id inline, its strings shared
//! and its args as JSON text, so a million pending one-off jobs cost about a hundred
//! bytes each, not a kilobyte (BENCHMARKS.md, memory per pending job).
//!
//! A [`StoredJob`] is 72 bytes, kept in the job table's slab (see [`super::tables`]):
//!
//! | field of [`Job`] | kept as |
//! | --- | --- |
//! | `id` | inline: 32 lowercase hex digits (what [`generate_id`](crate::job::generate_id) makes) as the 16 bytes they spell, any other id of up to 16 bytes as its bytes; a longer id in the [`Extra`] box |
//! | `trigger` | as is: a `date` trigger is inline (16 bytes), others share one allocation |
//! | `task`, `executor` | the number of the pair, interned per store: a handful of pairs shared by every job |
//! | `next_run_time`, `revision` | inline |
//! | `max_instances` | inline as a `u16`, in the [`Rare`] box from `u16::MAX` up |
//! | `coalesce`, `paused` | a bit each, in one byte with the id's form |
//! | `args` | nothing when null, else compact JSON text (`{"order_id":42}` is 15 bytes; a `Value` map is a B-tree node of over 500), in the [`Extra`] box; args nested too deep to read back from text as a `Value`, in the [`Rare`] box |
//! | `name`, `misfire_grace_time`, `jitter`, `overlap`, `config_spec`, `config_version`, `retry`, `expect_success` | in the [`Extra`] box's [`Rare`] box, none when all are at their usual values (the name is the task's, no limit, no jitter, `overlap = skip`, not from config) |
//!
//! The [`Extra`] box is one pointer, null for a job with null args, a short or
//! generated id and usual options: the pending one-off job the store is sized for.
//! The job also keeps its position in the due index (4 bytes), so the store needs no
//! allocation of its own per job.
//!
//! # Ground rules
//! - [`StoredJob::to_job`] gives back exactly the job that was stored (`args` round-trip
//!   through serde_json, which writes numbers so they read back the same; ids in any
//!   form come back byte for byte).
//! - Args nested too deep for serde_json's reader (128 levels) are kept as a `Value`.
//! - Ids order as their text does, whatever their form: the due index breaks ties by id.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::num::NonZeroU8;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::job::{ConfigVersion, Job, JobSpec};
use crate::trigger::Trigger;

/// serde_json's reader refuses deeper nesting than 128; stay clear of it.
const MAX_TEXT_DEPTH: usize = 100;

/// The digits of a hex id, in the order their values go.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The longest id kept inline as text.
const MAX_INLINE_ID: usize = 16;

/// The length of a hex id in digits: two per byte of [`StoredJob`]'s id bytes.
const HEX_ID_LEN: usize = 2 * MAX_INLINE_ID;

/// Written to [`StoredJob::due_position`] when the job is not in the due index.
pub(super) const NOT_DUE: u32 = u32::MAX;

/// A job as the memory store keeps it; see the module docs.
#[derive(Debug)]
pub(super) struct StoredJob {
    /// The id, read as [`IdForm`] says.
    id: [u8; MAX_INLINE_ID],
    trigger: Trigger,
    /// Changed only through the job table, which keeps the due index in step.
    next_run_time: Option<DateTime<Utc>>,
    pub(super) revision: u64,
    /// `None`: null args, the id inline, every field of [`Rare`] at its usual value.
    extra: Option<Box<Extra>>,
    /// The task and executor, by their number in the store's [`Names`].
    names: u32,
    /// Where the job's key is in the due index's heap, or [`NOT_DUE`]: kept here so a
    /// job leaves the index (paused, removed, acquired) without a search. Written by
    /// the due index only.
    pub(super) due_position: u32,
    /// `max_instances`, or `u16::MAX` when it is that or more: [`Rare::max_instances`]
    /// has it then. Jobs run one or a few instances at a time.
    max_instances: u16,
    flags: Flags,
}

/// The id's [`IdForm`], `coalesce` and `paused` in one byte: with a byte each the job
/// would not fit 72 bytes, and the slab holds a million. Its lowest bit is always set,
/// so the slab's vacant slots can be told apart by a zero there and cost no tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flags(NonZeroU8);

impl Flags {
    /// Where the id form's bits start: an inline id's length (0 to 16), or one of
    /// the two below.
    const ID_FORM_SHIFT: u32 = 1;
    const ID_FORM: u8 = 0b1_1111;
    const HEX_ID: u8 = 17;
    const BOXED_ID: u8 = 18;
    const COALESCE: u8 = 1 << 6;
    const PAUSED: u8 = 1 << 7;

    fn new(id_form: IdForm, coalesce: bool, paused: bool) -> Flags {
        let form = match id_form {
            IdForm::Hex => Flags::HEX_ID,
            // At most MAX_INLINE_ID (16): within the bits.
            IdForm::Inline { len } => len & Flags::ID_FORM,
            IdForm::Boxed => Flags::BOXED_ID,
        };
        let coalesce = if coalesce { Flags::COALESCE } else { 0 };
        let paused = if paused { Flags::PAUSED } else { 0 };
        Flags(NonZeroU8::MIN | form << Flags::ID_FORM_SHIFT | coalesce | paused)
    }

    fn id_form(self) -> IdForm {
        match self.0.get() >> Flags::ID_FORM_SHIFT & Flags::ID_FORM {
            Flags::HEX_ID => IdForm::Hex,
            Flags::BOXED_ID => IdForm::Boxed,
            len => IdForm::Inline { len },
        }
    }

    fn coalesce(self) -> bool {
        self.0.get() & Flags::COALESCE != 0
    }

    fn paused(self) -> bool {
        self.0.get() & Flags::PAUSED != 0
    }
}

/// How [`StoredJob::id`]'s bytes read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdForm {
    /// The 16 bytes that 32 lowercase hex digits spell, most significant first.
    Hex,
    /// The id's own bytes, `len` of them.
    Inline { len: u8 },
    /// Too long for inline: [`Extra::id`] holds it.
    Boxed,
}

/// The interned task and executor names of a job.
#[derive(Debug)]
struct TaskAndExecutor {
    task: Box<str>,
    executor: Box<str>,
}

/// What only some jobs have, boxed so the others pay a null pointer for it.
#[derive(Debug)]
struct Extra {
    /// An id longer than [`MAX_INLINE_ID`] bytes that is not hex.
    id: Option<Box<str>>,
    /// Args as compact JSON text; `None` when null or kept in [`Rare::deep_args`].
    args: Option<Box<str>>,
    rare: Option<Box<Rare>>,
}

/// The fields that most jobs leave at their usual values.
#[derive(Debug, Default)]
struct Rare {
    /// `None`: the task's name.
    name: Option<Box<str>>,
    misfire_grace_time: Option<Duration>,
    jitter: Option<Duration>,
    config_spec: Option<Box<JobSpec>>,
    config_version: Option<ConfigVersion>,
    /// Args too deep to read back from text.
    deep_args: Option<Box<Value>>,
    /// A `max_instances` too large for [`StoredJob::max_instances`].
    max_instances: Option<u32>,
    /// The overlap policy, unless it is the default (`skip`).
    overlap: crate::job::Overlap,
    /// The retry policy and where the job stands with it, unless it has none.
    retry: Option<Box<crate::job::RetryState>>,
    /// The dead-man's switch, unless it has none.
    expect_success: Option<Box<crate::job::SuccessWatch>>,
}

impl Rare {
    fn is_usual(&self) -> bool {
        self.name.is_none()
            && self.misfire_grace_time.is_none()
            && self.jitter.is_none()
            && self.config_spec.is_none()
            && self.config_version.is_none()
            && self.deep_args.is_none()
            && self.max_instances.is_none()
            && self.overlap.is_skip()
            && self.retry.is_none()
            && self.expect_success.is_none()
    }
}

/// The (task, executor) pairs of a store's jobs, each kept once and known by its
/// number.
#[derive(Debug, Default)]
pub(super) struct Names {
    /// Every pair, by number.
    pairs: Vec<TaskAndExecutor>,
    /// The numbers of the pairs by task, then the few executors its jobs use.
    by_task: HashMap<Box<str>, Vec<u32>>,
    /// The pair of the last job stored: jobs come in runs of the same task (a shop
    /// adding cancel jobs), and two string compares cost less than a hash lookup.
    last: Option<u32>,
}

impl Names {
    /// The pair's number; `None` only when numbers ran out (2^32 pairs). Tasks and
    /// executors are registered names, a few per scheduler, so the pairs stay few and
    /// are never pruned.
    fn intern(&mut self, task: &str, executor: &str) -> Option<u32> {
        if let Some(last) = self.last {
            let pair = self.get(last);
            if &*pair.task == task && &*pair.executor == executor {
                return Some(last);
            }
        }
        let number = self.lookup(task, executor)?;
        self.last = Some(number);
        Some(number)
    }

    fn lookup(&mut self, task: &str, executor: &str) -> Option<u32> {
        if let Some(&number) = self.by_task.get(task).and_then(|numbers| {
            numbers
                .iter()
                .find(|&&number| &*self.get(number).executor == executor)
        }) {
            return Some(number);
        }
        let number = u32::try_from(self.pairs.len()).ok()?;
        self.pairs.push(TaskAndExecutor {
            task: task.into(),
            executor: executor.into(),
        });
        self.by_task.entry(task.into()).or_default().push(number);
        Some(number)
    }

    /// The pair numbered `number`, which [`Names::intern`] gave out: pairs are never
    /// removed, so it is there.
    fn get(&self, number: u32) -> &TaskAndExecutor {
        &self.pairs[number as usize]
    }
}

/// `id` in the form it is kept in: its inline bytes, their form, and the id itself
/// when it goes in the [`Extra`] box.
fn store_id(id: &str) -> ([u8; MAX_INLINE_ID], IdForm, Option<Box<str>>) {
    let mut bytes = [0u8; MAX_INLINE_ID];
    if let Some(spelled) = hex_bytes(id) {
        return (spelled, IdForm::Hex, None);
    }
    match u8::try_from(id.len()) {
        Ok(len) if id.len() <= MAX_INLINE_ID => {
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            (bytes, IdForm::Inline { len }, None)
        }
        _ => (bytes, IdForm::Boxed, Some(id.into())),
    }
}

/// The bytes that `id` spells if it is 32 lowercase hex digits. Uppercase digits do not
/// count: the id must come back as it was written.
fn hex_bytes(id: &str) -> Option<[u8; MAX_INLINE_ID]> {
    let digits = id.as_bytes();
    if digits.len() != HEX_ID_LEN {
        return None;
    }
    // Every lookup of a job by id passes here (twice a run): a table and one check at
    // the end, not a branch per digit.
    let mut bytes = [0u8; MAX_INLINE_ID];
    let mut invalid = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        invalid |= high | low;
        *byte = high << 4 | (low & 0xf);
    }
    (invalid & NOT_HEX == 0).then_some(bytes)
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0x10;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        values[HEX_DIGITS[digit] as usize] = digit as u8;
        digit += 1;
    }
    values
};

/// Writes the 32 hex digits that `bytes` spell into `buffer`.
fn spell_hex(bytes: &[u8; MAX_INLINE_ID], buffer: &mut [u8; HEX_ID_LEN]) {
    for (byte, pair) in bytes.iter().zip(buffer.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
    }
}

/// Room to spell out an inline hex id ([`StoredJob::id_bytes`]).
pub(super) type IdBuffer = [u8; HEX_ID_LEN];

impl StoredJob {
    /// The stored form of `job`, not in the due index yet; `None` only when `names`
    /// is full.
    pub(super) fn new(job: &Job, names: &mut Names) -> Option<StoredJob> {
        let (id, id_form, long_id) = store_id(&job.id);
        let (args, deep_args) = store_args(&job.args);
        let (max_instances, large_max_instances) = match u16::try_from(job.max_instances) {
            Ok(small) if small != u16::MAX => (small, None),
            _ => (u16::MAX, Some(job.max_instances)),
        };
        let rare = Rare {
            name: (job.name != job.task).then(|| job.name.as_str().into()),
            misfire_grace_time: job.misfire_grace_time,
            jitter: job.jitter,
            config_spec: job.config_spec.clone(),
            config_version: job.config_version.clone(),
            deep_args,
            max_instances: large_max_instances,
            overlap: job.overlap,
            retry: (job.retry != crate::job::RetryState::default())
                .then(|| Box::new(job.retry.clone())),
            expect_success: job.expect_success.clone().map(Box::new),
        };
        let rare = (!rare.is_usual()).then(|| Box::new(rare));
        let extra = (long_id.is_some() || args.is_some() || rare.is_some()).then(|| {
            Box::new(Extra {
                id: long_id,
                args,
                rare,
            })
        });
        Some(StoredJob {
            id,
            trigger: job.trigger.clone(),
            next_run_time: job.next_run_time,
            revision: job.revision,
            extra,
            names: names.intern(&job.task, &job.executor)?,
            due_position: NOT_DUE,
            max_instances,
            flags: Flags::new(id_form, job.coalesce, job.paused),
        })
    }

    /// The job it was made from; `names` are the store's.
    pub(super) fn to_job(&self, names: &Names) -> Job {
        let extra = self.extra.as_deref();
        let rare = extra.and_then(|extra| extra.rare.as_deref());
        let pair = names.get(self.names);
        let task = &*pair.task;
        Job {
            id: self.id_string(),
            name: rare
                .and_then(|rare| rare.name.as_deref())
                .unwrap_or(task)
                .to_owned(),
            task: task.to_owned(),
            args: args_value(
                extra.and_then(|extra| extra.args.as_deref()),
                rare.and_then(|rare| rare.deep_args.as_deref()),
            ),
            trigger: self.trigger.clone(),
            executor: pair.executor.to_string(),
            misfire_grace_time: rare.and_then(|rare| rare.misfire_grace_time),
            coalesce: self.flags.coalesce(),
            max_instances: rare
                .and_then(|rare| rare.max_instances)
                .unwrap_or(u32::from(self.max_instances)),
            overlap: rare.map(|rare| rare.overlap).unwrap_or_default(),
            jitter: rare.and_then(|rare| rare.jitter),
            paused: self.flags.paused(),
            next_run_time: self.next_run_time,
            revision: self.revision,
            retry: rare
                .and_then(|rare| rare.retry.as_deref())
                .cloned()
                .unwrap_or_default(),
            config_spec: rare.and_then(|rare| rare.config_spec.clone()),
            config_version: rare.and_then(|rare| rare.config_version.clone()),
            expect_success: rare
                .and_then(|rare| rare.expect_success.as_deref())
                .cloned(),
        }
    }

    /// Its trigger.
    pub(super) fn trigger(&self) -> &Trigger {
        &self.trigger
    }

    /// Whether the job is paused.
    pub(super) fn paused(&self) -> bool {
        self.flags.paused()
    }

    /// When the job runs next; `None` when paused or finished.
    pub(super) fn next_run_time(&self) -> Option<DateTime<Utc>> {
        self.next_run_time
    }

    /// Sets the next run time. Only the job table calls this, with the job out of the
    /// due index, which orders jobs by it.
    pub(super) fn set_next_run_time(&mut self, next: Option<DateTime<Utc>>) {
        self.next_run_time = next;
    }

    /// The id's text as bytes, spelled out into `buffer` if it is kept as hex.
    pub(super) fn id_bytes<'a>(&'a self, buffer: &'a mut IdBuffer) -> &'a [u8] {
        match self.flags.id_form() {
            IdForm::Hex => {
                spell_hex(&self.id, buffer);
                buffer
            }
            IdForm::Inline { len } => &self.id[..usize::from(len)],
            IdForm::Boxed => self
                .extra
                .as_ref()
                .and_then(|extra| extra.id.as_deref())
                .map_or(&[], str::as_bytes),
        }
    }

    /// Whether the job's id is `id`.
    pub(super) fn id_is(&self, id: &str) -> bool {
        match self.flags.id_form() {
            // Most lookups of a generated id compare 16 bytes, without spelling them out.
            IdForm::Hex => hex_bytes(id).is_some_and(|bytes| bytes == self.id),
            _ => self.id_bytes(&mut [0; HEX_ID_LEN]) == id.as_bytes(),
        }
    }

    /// The job's id.
    pub(super) fn id_string(&self) -> String {
        let mut buffer = [0; HEX_ID_LEN];
        let bytes = self.id_bytes(&mut buffer);
        match std::str::from_utf8(bytes) {
            Ok(id) => id.to_owned(),
            // Never: every form holds the bytes of a `str`.
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// Orders two jobs by id, as their ids' text orders (bytewise).
    pub(super) fn cmp_ids(&self, other: &StoredJob) -> Ordering {
        if self.flags.id_form() == IdForm::Hex && other.flags.id_form() == IdForm::Hex {
            // Lowercase hex digits sort as the values they spell, and every hex id is
            // 32 digits long, so the bytes order as the text does. Compared as one
            // number: the due index compares ids at every tie.
            return u128::from_be_bytes(self.id).cmp(&u128::from_be_bytes(other.id));
        }
        let mut buffer = [0; HEX_ID_LEN];
        let mut other_buffer = [0; HEX_ID_LEN];
        self.id_bytes(&mut buffer)
            .cmp(other.id_bytes(&mut other_buffer))
    }
}

/// Args as kept: compact JSON text, or, when nested too deep to read back from text,
/// the `Value` itself. Both `None` for null args.
fn store_args(args: &Value) -> (Option<Box<str>>, Option<Box<Value>>) {
    if args.is_null() {
        return (None, None);
    }
    if depth(args) > MAX_TEXT_DEPTH {
        return (None, Some(Box::new(args.clone())));
    }
    match serde_json::to_string(args) {
        Ok(text) => (Some(text.into_boxed_str()), None),
        // A `Value` always serializes; keep it as it is all the same.
        Err(_) => (None, Some(Box::new(args.clone()))),
    }
}

/// The args that [`store_args`] kept as `text` or `deep`.
fn args_value(text: Option<&str>, deep: Option<&Value>) -> Value {
    match (text, deep) {
        // Written by serde_json from a `Value` no deeper than MAX_TEXT_DEPTH, so it
        // reads back; `Null` would only hide a bug, hence the log.
        (Some(text), _) => serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, "stored job args did not read back");
            Value::Null
        }),
        (None, Some(deep)) => deep.clone(),
        (None, None) => Value::Null,
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

    #[test]
    fn only_32_lowercase_hex_digits_are_kept_as_bytes() {
        let id = "0123456789abcdeffedcba9876543210";
        let bytes = hex_bytes(id).expect("lowercase hex");
        let mut spelled = [0u8; HEX_ID_LEN];
        spell_hex(&bytes, &mut spelled);
        assert_eq!(&spelled, id.as_bytes());
        // Each ASCII byte that is no lowercase hex digit, at each place, keeps the id as
        // text (a lone byte past ASCII is no `str`).
        for place in 0..HEX_ID_LEN {
            for byte in (0..=255u8).filter(|byte| !HEX_DIGITS.contains(byte)) {
                let mut digits = id.as_bytes().to_vec();
                digits[place] = byte;
                if let Ok(text) = std::str::from_utf8(&digits) {
                    assert_eq!(hex_bytes(text), None, "{text:?}");
                }
            }
        }
        assert_eq!(hex_bytes(&id[1..]), None);
        assert_eq!(hex_bytes(&format!("{id}0")), None);
    }

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
            overlap: Default::default(),
            jitter: None,
            paused: false,
            revision: 7,
            config_spec: None,
            config_version: None,
            retry: Default::default(),
            expect_success: None,
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
                let stored = StoredJob::new(&original, &mut names).expect("room for names");
                assert_eq!(stored.to_job(&names), original);
            }
        }
    }

    #[test]
    fn task_and_executor_names_are_shared() {
        let mut names = Names::default();
        let first = StoredJob::new(&job(Value::Null, "orders.cancel"), &mut names);
        let second = StoredJob::new(&job(Value::Null, "orders.cancel"), &mut names);
        let (first, second) = first.zip(second).expect("room for names");
        assert_eq!(first.names, second.names);
        assert_eq!(names.pairs.len(), 1);
        assert!(
            first
                .extra
                .as_ref()
                .is_some_and(|extra| extra.rare.is_some()),
            "a misfire grace time is rare"
        );
    }

    #[test]
    fn a_pending_one_off_job_is_72_bytes_and_allocates_nothing() {
        // Not a test of behaviour, but a million pending jobs pay for every byte here.
        assert!(std::mem::size_of::<Trigger>() <= 16);
        assert!(std::mem::size_of::<StoredJob>() <= 72);
        let mut one_off = job(Value::Null, "orders.cancel");
        one_off.id = crate::job::generate_id();
        one_off.misfire_grace_time = None;
        let mut names = Names::default();
        let stored = StoredJob::new(&one_off, &mut names).expect("room for names");
        assert!(stored.extra.is_none());
        assert_eq!(stored.flags.id_form(), IdForm::Hex);
        assert_eq!(stored.to_job(&names), one_off);
    }

    #[test]
    fn flags_and_max_instances_of_any_size_read_back_the_same() {
        let mut names = Names::default();
        for max_instances in [
            0,
            1,
            3,
            u32::from(u16::MAX) - 1,
            u32::from(u16::MAX),
            u32::MAX,
        ] {
            for coalesce in [false, true] {
                for paused in [false, true] {
                    let mut original = job(Value::Null, "orders.cancel");
                    original.misfire_grace_time = None;
                    original.max_instances = max_instances;
                    original.coalesce = coalesce;
                    original.paused = paused;
                    let stored = StoredJob::new(&original, &mut names).expect("room for names");
                    assert_eq!(stored.to_job(&names), original);
                    assert_eq!(
                        stored.extra.is_some(),
                        max_instances >= u32::from(u16::MAX),
                        "{max_instances}"
                    );
                }
            }
        }
    }

    fn stored_with_id(id: &str) -> StoredJob {
        let mut with_id = job(Value::Null, "orders.cancel");
        with_id.id = id.to_owned();
        StoredJob::new(&with_id, &mut Names::default()).expect("room for names")
    }

    #[test]
    fn every_overlap_reads_back_the_same_and_skip_costs_no_box() {
        let mut names = Names::default();
        for overlap in [
            crate::job::Overlap::Skip,
            crate::job::Overlap::Queue,
            crate::job::Overlap::Replace,
        ] {
            let mut job = job(Value::Null, "orders.cancel");
            job.id = crate::job::generate_id();
            job.misfire_grace_time = None;
            job.overlap = overlap;
            let stored = StoredJob::new(&job, &mut names).expect("room for names");
            assert_eq!(stored.to_job(&names), job);
            assert_eq!(stored.extra.is_none(), overlap.is_skip());
        }
    }

    #[test]
    fn ids_of_every_form_read_back_the_same() {
        let generated = crate::job::generate_id();
        let cases: [(&str, IdForm); 12] = [
            (&generated, IdForm::Hex),
            ("0123456789abcdef0123456789abcdef", IdForm::Hex),
            ("00000000000000000000000000000000", IdForm::Hex),
            ("ffffffffffffffffffffffffffffffff", IdForm::Hex),
            // Looks hex, but would not come back uppercase from 16 bytes.
            ("0123456789ABCDEF0123456789abcdef", IdForm::Boxed),
            // Hex of other lengths.
            ("0123456789abcdef0123456789abcde", IdForm::Boxed),
            ("0123456789abcdef0123456789abcdef0", IdForm::Boxed),
            ("0123456789abcdef", IdForm::Inline { len: 16 }),
            ("", IdForm::Inline { len: 0 }),
            ("order-cancel-42", IdForm::Inline { len: 15 }),
            ("café-ünïcode", IdForm::Inline { len: 15 }),
            ("a job id longer than sixteen bytes", IdForm::Boxed),
        ];
        for (id, form) in cases {
            let stored = stored_with_id(id);
            assert_eq!(stored.flags.id_form(), form, "{id:?}");
            assert_eq!(stored.id_string(), id);
            assert_eq!(stored.id_bytes(&mut IdBuffer::default()), id.as_bytes());
            assert!(stored.id_is(id), "{id:?}");
            assert!(!stored.id_is(&format!("{id}x")), "{id:?}");
        }
        assert!(!stored_with_id("0123456789abcdef0123456789abcdef")
            .id_is("0123456789ABCDEF0123456789ABCDEF"));
    }

    #[test]
    fn ids_order_as_their_text_whatever_their_form() {
        let ids = [
            "",
            "0",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdf0",
            "1",
            "a job id longer than sixteen bytes",
            "ffffffffffffffffffffffffffffffff",
            "order-cancel-42",
            "é",
        ];
        let stored: Vec<StoredJob> = ids.iter().map(|id| stored_with_id(id)).collect();
        for (left, left_id) in stored.iter().zip(ids) {
            for (right, right_id) in stored.iter().zip(ids) {
                assert_eq!(
                    left.cmp_ids(right),
                    left_id.cmp(right_id),
                    "{left_id:?} against {right_id:?}"
                );
            }
        }
    }
}
