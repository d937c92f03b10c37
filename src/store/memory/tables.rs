//! The memory store's job table: the jobs in a slab, an index by id and the due
//! index, shaped for a million pending jobs (BENCHMARKS.md, memory per pending job).
//!
//! - The slab is a `Vec` of [`StoredJob`]s (72 bytes each) with a free list through
//!   its vacant slots: no allocation, and no allocator header, per job. A job is known
//!   inside the store by its slot number, a `u32`.
//! - The index by id is a `hashbrown::HashTable` of slot numbers (4 bytes and a control
//!   byte per bucket) that hashes and compares the id the slab holds, so the id is not
//!   kept twice.
//! - The due index is a binary min-heap of (next run time, slot) keys, 16 bytes each.
//!   Every job in it knows its position ([`StoredJob::due_position`]), so pausing,
//!   removing, acquiring or rescheduling a job takes it out in O(log n) without a
//!   search. A heap is full to the last key, where a B-tree filled in time order (as
//!   jobs are added, due a fixed time after now) leaves its nodes half empty.
//!
//! Due jobs come out earliest first and, at the same instant, by id (the text's byte
//! order), as the SQL and Redis stores give them: 10,000 recurring jobs due in the same
//! second are acquired in the same order on every store.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::compact::{IdBuffer, StoredJob, NOT_DUE};

/// A job's place in the slab, fixed while the job is in the table.
pub(super) type SlotNumber = u32;

/// How many children a node of the due heap has. Two: with jobs tied at one instant
/// (10,000 recurring jobs due in the same second) every compare is of two ids read
/// from the slab, and a binary heap taking its earliest key out bottom-up makes one
/// per level, where a 4-ary one makes three per half as many levels.
const ARITY: usize = 2;

#[derive(Debug)]
enum Slot {
    Occupied(StoredJob),
    /// Free; the next free slot after it.
    Vacant {
        next_free: Option<SlotNumber>,
    },
}

/// A key of the due index.
#[derive(Clone, Copy, Debug)]
struct DueKey {
    at: DateTime<Utc>,
    slot: SlotNumber,
}

/// Why [`JobTable::insert_new`] did not add a job.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum InsertError {
    /// A job with its id is there.
    Taken,
    /// The table holds as many jobs as slot numbers can count.
    Full,
}

/// Jobs by slot number and by id, and the due ones by next run time; see the module
/// docs.
#[derive(Default)]
pub(super) struct JobTable {
    slots: Vec<Slot>,
    first_free: Option<SlotNumber>,
    by_id: hashbrown::HashTable<SlotNumber>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The due index: a heap ordered by [`JobTable::due_before`].
    due: Vec<DueKey>,
}

impl std::fmt::Debug for JobTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTable")
            .field("len", &self.by_id.len())
            .field("due", &self.due.len())
            .finish_non_exhaustive()
    }
}

/// The slab index of `slot`: slot numbers are `u32`s, which fit a `usize` on every
/// target the store runs on.
fn index(slot: SlotNumber) -> usize {
    slot as usize
}

fn hash_id(hasher: &hashbrown::DefaultHashBuilder, id: &[u8]) -> u64 {
    std::hash::BuildHasher::hash_one(hasher, id)
}

fn occupied(slots: &[Slot], slot: SlotNumber) -> Option<&StoredJob> {
    match slots.get(index(slot)) {
        Some(Slot::Occupied(job)) => Some(job),
        _ => None,
    }
}

impl JobTable {
    /// The slot of the job with id `id`.
    pub(super) fn find(&self, id: &str) -> Option<SlotNumber> {
        let hash = hash_id(&self.hasher, id.as_bytes());
        self.by_id
            .find(hash, |&slot| {
                occupied(&self.slots, slot).is_some_and(|job| job.id_is(id))
            })
            .copied()
    }

    /// The job in `slot`.
    pub(super) fn get(&self, slot: SlotNumber) -> Option<&StoredJob> {
        occupied(&self.slots, slot)
    }

    /// The job with id `id`.
    pub(super) fn get_by_id(&self, id: &str) -> Option<&StoredJob> {
        self.find(id).and_then(|slot| self.get(slot))
    }

    /// Adds `job` unless a job with its id is there, and makes it due if it has a next
    /// run time (a new job is never acquired).
    pub(super) fn insert_new(&mut self, job: StoredJob) -> Result<SlotNumber, InsertError> {
        let JobTable {
            slots,
            first_free,
            by_id,
            hasher,
            ..
        } = self;
        let hash = hash_id(hasher, job.id_bytes(&mut IdBuffer::default()));
        let vacant = match by_id.entry(
            hash,
            |&held| occupied(slots, held).is_some_and(|held| held.cmp_ids(&job).is_eq()),
            |&held| {
                occupied(slots, held).map_or(0, |held| {
                    hash_id(hasher, held.id_bytes(&mut IdBuffer::default()))
                })
            },
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return Err(InsertError::Taken),
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant,
        };
        let slot = match *first_free {
            Some(free) => {
                let next_free = match slots.get(index(free)) {
                    Some(Slot::Vacant { next_free }) => *next_free,
                    _ => None,
                };
                *first_free = next_free;
                slots[index(free)] = Slot::Occupied(job);
                free
            }
            None => {
                // Slot numbers stay below NOT_DUE, so no heap position can be mistaken
                // for it either.
                let slot = SlotNumber::try_from(slots.len())
                    .ok()
                    .filter(|&slot| slot < NOT_DUE)
                    .ok_or(InsertError::Full)?;
                slots.push(Slot::Occupied(job));
                slot
            }
        };
        vacant.insert(slot);
        self.make_due(slot);
        Ok(slot)
    }

    /// Overwrites the job in `slot` with `job`, which has the same id, and makes it
    /// due if `due` and it has a next run time.
    pub(super) fn replace(&mut self, slot: SlotNumber, job: StoredJob, due: bool) {
        self.make_not_due(slot);
        if let Some(Slot::Occupied(held)) = self.slots.get_mut(index(slot)) {
            *held = job;
            if due {
                self.make_due(slot);
            }
        }
    }

    /// Sets the job's next run time and revision, and makes it due (the end of a run).
    pub(super) fn reschedule(&mut self, slot: SlotNumber, next: DateTime<Utc>, revision: u64) {
        self.make_not_due(slot);
        if let Some(Slot::Occupied(job)) = self.slots.get_mut(index(slot)) {
            job.set_next_run_time(Some(next));
            job.revision = revision;
            self.make_due(slot);
        }
    }

    /// Takes the job in `slot` out of the table; its slot is free for the next job.
    pub(super) fn remove(&mut self, slot: SlotNumber) -> Option<StoredJob> {
        self.make_not_due(slot);
        let job = occupied(&self.slots, slot)?;
        let hash = hash_id(&self.hasher, job.id_bytes(&mut IdBuffer::default()));
        if let Ok(entry) = self.by_id.find_entry(hash, |&held| held == slot) {
            entry.remove();
        }
        let vacant = Slot::Vacant {
            next_free: self.first_free,
        };
        self.first_free = Some(slot);
        match std::mem::replace(&mut self.slots[index(slot)], vacant) {
            Slot::Occupied(job) => Some(job),
            Slot::Vacant { .. } => None,
        }
    }

    /// Every job with its slot, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (SlotNumber, &StoredJob)> {
        (0..)
            .zip(&self.slots)
            .filter_map(|(slot, held)| match held {
                Slot::Occupied(job) => Some((slot, job)),
                Slot::Vacant { .. } => None,
            })
    }

    /// How many jobs there are.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Drops every job, giving their memory back.
    pub(super) fn clear(&mut self) {
        *self = JobTable::default();
    }

    /// The earliest key of the due index: the job's next run time and slot.
    pub(super) fn first_due(&self) -> Option<(DateTime<Utc>, SlotNumber)> {
        self.due.first().map(|key| (key.at, key.slot))
    }

    /// How many jobs are due some time (in the due index).
    pub(super) fn due_len(&self) -> usize {
        self.due.len()
    }

    /// Takes the earliest job out of the due index; its slot.
    pub(super) fn pop_due(&mut self) -> Option<SlotNumber> {
        let first = *self.due.first()?;
        let last = self.due.pop()?;
        if !self.due.is_empty() {
            // Bottom-up: the hole left at the root goes down to a leaf, the earliest
            // child filling it at each level, and the last key goes up from there. The
            // last key nearly always belongs near the leaves, so this saves the compare
            // with it at every level: half the compares of a binary heap, each of two
            // ids when jobs tie.
            let mut hole = 0;
            while let Some(earliest) = self.earliest_child(hole) {
                self.place(hole, self.due[earliest]);
                hole = earliest;
            }
            self.sift_up(hole, last);
        }
        if let Some(Slot::Occupied(job)) = self.slots.get_mut(index(first.slot)) {
            job.due_position = NOT_DUE;
        }
        Some(first.slot)
    }

    /// Puts the job in `slot` in the due index, at its next run time, unless it is
    /// there already or has none.
    pub(super) fn make_due(&mut self, slot: SlotNumber) {
        let Some(job) = occupied(&self.slots, slot) else {
            return;
        };
        if job.due_position != NOT_DUE {
            return;
        }
        if let Some(at) = job.next_run_time() {
            let key = DueKey { at, slot };
            self.due.push(key);
            self.sift_up(self.due.len() - 1, key);
        }
    }

    /// Takes the job in `slot` out of the due index, if it is there.
    pub(super) fn make_not_due(&mut self, slot: SlotNumber) {
        if let Some(job) = occupied(&self.slots, slot) {
            if job.due_position != NOT_DUE {
                self.remove_due_at(index(job.due_position));
            }
        }
    }

    /// Whether `key` comes out of the due index before `other`: earlier, or at the
    /// same instant with the smaller id.
    fn due_before(&self, key: DueKey, other: DueKey) -> bool {
        match key.at.cmp(&other.at) {
            Ordering::Equal => match (&self.slots[index(key.slot)], &self.slots[index(other.slot)])
            {
                (Slot::Occupied(job), Slot::Occupied(other_job)) => job.cmp_ids(other_job).is_lt(),
                // Never: every key's slot holds a job.
                _ => key.slot < other.slot,
            },
            order => order.is_lt(),
        }
    }

    /// Writes `key` at `position` of the heap and tells its job.
    fn place(&mut self, position: usize, key: DueKey) {
        self.due[position] = key;
        if let Some(Slot::Occupied(job)) = self.slots.get_mut(index(key.slot)) {
            // Heap positions are below the number of slots, itself below NOT_DUE.
            job.due_position = SlotNumber::try_from(position).unwrap_or(NOT_DUE);
        }
    }

    /// Moves `key`, meant for `position`, up past the keys it comes before.
    fn sift_up(&mut self, mut position: usize, key: DueKey) {
        while position > 0 {
            let parent = (position - 1) / ARITY;
            let parent_key = self.due[parent];
            if !self.due_before(key, parent_key) {
                break;
            }
            self.place(position, parent_key);
            position = parent;
        }
        self.place(position, key);
    }

    /// Moves `key`, meant for `position`, down past the keys that come before it.
    fn sift_down(&mut self, mut position: usize, key: DueKey) {
        while let Some(earliest) = self.earliest_child(position) {
            let earliest_key = self.due[earliest];
            if !self.due_before(earliest_key, key) {
                break;
            }
            self.place(position, earliest_key);
            position = earliest;
        }
        self.place(position, key);
    }

    /// The position of the earliest child of the key at `position`; `None` at a leaf.
    fn earliest_child(&self, position: usize) -> Option<usize> {
        let first_child = position * ARITY + 1;
        let last_child = (first_child + ARITY).min(self.due.len());
        (first_child..last_child).reduce(|earliest, child| {
            if self.due_before(self.due[child], self.due[earliest]) {
                child
            } else {
                earliest
            }
        })
    }

    /// Takes the key at `position` out of the heap.
    fn remove_due_at(&mut self, position: usize) -> Option<DueKey> {
        let removed = *self.due.get(position)?;
        let last = self.due.pop()?;
        if position < self.due.len() {
            // The last key fills the hole, then moves whichever way it belongs.
            if position > 0 && self.due_before(last, self.due[(position - 1) / ARITY]) {
                self.sift_up(position, last);
            } else {
                self.sift_down(position, last);
            }
        }
        if let Some(Slot::Occupied(job)) = self.slots.get_mut(index(removed.slot)) {
            job.due_position = NOT_DUE;
        }
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::compact::Names;
    use super::*;
    use crate::job::Job;
    use crate::trigger::{Trigger, TriggerContext, TriggerSpec};
    use chrono::TimeDelta;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).expect("a valid instant")
    }

    fn stored(id: &str, at: Option<DateTime<Utc>>, names: &mut Names) -> StoredJob {
        let spec: TriggerSpec = serde_json::from_value(
            serde_json::json!({"type": "date", "run_date": "2030-01-01T00:00:00Z"}),
        )
        .expect("a date spec");
        let trigger = Trigger::new(spec, &TriggerContext::new(t0())).expect("valid");
        let job = Job {
            id: id.to_owned(),
            name: "noop".to_owned(),
            task: "noop".to_owned(),
            args: serde_json::Value::Null,
            trigger,
            executor: "default".to_owned(),
            misfire_grace_time: None,
            coalesce: true,
            max_instances: 1,
            overlap: Default::default(),
            jitter: None,
            paused: at.is_none(),
            next_run_time: at,
            revision: 1,
            config_spec: None,
            config_version: None,
            retry: Default::default(),
            expect_success: None,
        };
        StoredJob::new(&job, names).expect("room for names")
    }

    /// Checks the heap's order and that every job knows its position.
    fn assert_heap_holds(table: &JobTable) {
        for (position, key) in table.due.iter().enumerate() {
            let job = table.get(key.slot).expect("a key's slot holds a job");
            assert_eq!(job.due_position as usize, position);
            assert_eq!(job.next_run_time(), Some(key.at));
            if position > 0 {
                let parent = table.due[(position - 1) / ARITY];
                assert!(!table.due_before(*key, parent), "heap order at {position}");
            }
        }
        let in_heap = table
            .iter()
            .filter(|(_, job)| job.due_position != NOT_DUE)
            .count();
        assert_eq!(in_heap, table.due.len());
    }

    /// Pops every due job: (next run time, id), in the order they came out.
    fn drain(table: &mut JobTable) -> Vec<(DateTime<Utc>, String)> {
        let mut drained = Vec::new();
        while let Some((at, slot)) = table.first_due() {
            assert_eq!(table.pop_due(), Some(slot));
            let job = table.get(slot).expect("a due job");
            assert_eq!(job.due_position, NOT_DUE);
            drained.push((at, job.id_string()));
        }
        drained
    }

    #[test]
    fn a_vacant_slot_costs_a_job_no_space() {
        assert_eq!(
            std::mem::size_of::<Slot>(),
            std::mem::size_of::<StoredJob>(),
            "the slot's tag fits a niche of the job"
        );
    }

    #[test]
    fn a_removed_jobs_slot_goes_to_the_next_job() {
        let mut names = Names::default();
        let mut table = JobTable::default();
        let mut slots = Vec::new();
        for id in ["a", "b", "c"] {
            let job = stored(id, Some(t0()), &mut names);
            slots.push(table.insert_new(job).expect("a new id"));
        }
        assert_eq!(
            table.insert_new(stored("b", None, &mut names)),
            Err(InsertError::Taken)
        );
        let removed = table.remove(slots[1]).expect("b is there");
        assert_eq!(removed.id_string(), "b");
        assert_eq!(table.find("b"), None);
        assert!(table.remove(slots[1]).is_none(), "removed once only");
        let reused = table
            .insert_new(stored("d", Some(t0()), &mut names))
            .expect("a new id");
        assert_eq!(reused, slots[1], "the free slot is taken first");
        let fresh = table
            .insert_new(stored("e", None, &mut names))
            .expect("a new id");
        assert_eq!(fresh, 3, "then the slab grows");
        assert_eq!(table.len(), 4);
        for (id, slot) in [("a", 0), ("c", 2), ("d", 1), ("e", 3)] {
            assert_eq!(table.find(id), Some(slot), "{id}");
            assert_eq!(
                table.get_by_id(id).map(StoredJob::id_string).as_deref(),
                Some(id)
            );
        }
        assert_heap_holds(&table);
        let order: Vec<String> = drain(&mut table).into_iter().map(|(_, id)| id).collect();
        assert_eq!(order, ["a", "c", "d"], "e is paused");
    }

    #[test]
    fn jobs_due_at_the_same_instant_come_out_by_id() {
        let mut names = Names::default();
        let mut table = JobTable::default();
        let later = t0() + TimeDelta::seconds(1);
        let mut ids = vec![
            "ffffffffffffffffffffffffffffffff".to_owned(),
            "0123456789ABCDEF0123456789abcdef".to_owned(),
            "0123456789abcdef0123456789abcdef".to_owned(),
            "a job id longer than sixteen bytes".to_owned(),
            "job-2".to_owned(),
            "job-10".to_owned(),
        ];
        ids.extend((0..50).map(|_| crate::job::generate_id()));
        for id in &ids {
            table
                .insert_new(stored(id, Some(later), &mut names))
                .expect("a new id");
        }
        table
            .insert_new(stored("zz-earlier", Some(t0()), &mut names))
            .expect("a new id");
        assert_heap_holds(&table);
        ids.sort();
        let mut expected = vec![(t0(), "zz-earlier".to_owned())];
        expected.extend(ids.into_iter().map(|id| (later, id)));
        assert_eq!(drain(&mut table), expected);
    }

    #[test]
    fn the_due_heap_takes_out_any_job() {
        fastrand::seed(9);
        let mut names = Names::default();
        let mut table = JobTable::default();
        let mut live: Vec<(SlotNumber, String)> = Vec::new();
        // Few distinct instants, so ties are common.
        let at = || Some(t0() + TimeDelta::seconds(fastrand::i64(0..20)));
        for round in 0..2_000 {
            match fastrand::u8(0..10) {
                0..=4 => {
                    let id = format!("job-{round}");
                    let paused = fastrand::u8(0..8) == 0;
                    let job = stored(&id, if paused { None } else { at() }, &mut names);
                    live.push((table.insert_new(job).expect("a new id"), id));
                }
                5 | 6 if !live.is_empty() => {
                    let (slot, id) = live.swap_remove(fastrand::usize(..live.len()));
                    let removed = table.remove(slot).expect("a live job");
                    assert_eq!(removed.id_string(), id);
                }
                7 if !live.is_empty() => {
                    let (slot, _) = live[fastrand::usize(..live.len())];
                    table.make_not_due(slot);
                }
                8 if !live.is_empty() => {
                    let (slot, _) = live[fastrand::usize(..live.len())];
                    let next = at().expect("an instant");
                    table.reschedule(slot, next, 2);
                }
                _ if !live.is_empty() => {
                    let (slot, _) = live[fastrand::usize(..live.len())];
                    table.make_due(slot);
                }
                _ => {}
            }
            assert_heap_holds(&table);
        }
        assert_eq!(table.len(), live.len());
        let mut expected: Vec<(DateTime<Utc>, String)> = table
            .iter()
            .filter(|(_, job)| job.due_position != NOT_DUE)
            .map(|(_, job)| (job.next_run_time().expect("due"), job.id_string()))
            .collect();
        expected.sort();
        assert!(expected.len() > 100, "a heap worth testing");
        assert_eq!(drain(&mut table), expected);
    }
}
