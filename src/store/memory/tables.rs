//! The memory store's job table and the keys of its due and lease indexes, both shaped
//! for a million pending jobs (issue 9): one pointer per job in the table, and index
//! keys that share the job's id allocation and order ties cheaply.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Entry;

/// A key of the due and lease indexes: an instant, then the job id.
///
/// Many keys share an instant (10,000 recurring jobs due in the same second; the leases
/// of one batch all expire together), so ties must be cheap to order: the id's first
/// four bytes, big-endian, order as the id does and settle nearly every tie between
/// generated ids without comparing the ids themselves (issue 9, recurring). They sit in
/// the padding after the 12-byte instant, so a key is still 32 bytes.
#[derive(Clone, Debug)]
pub(super) struct Timed {
    pub(super) at: DateTime<Utc>,
    prefix: u32,
    pub(super) id: Arc<str>,
}

impl Timed {
    pub(super) fn new(at: DateTime<Utc>, id: &Arc<str>) -> Timed {
        let mut prefix = [0u8; 4];
        for (byte, from) in prefix.iter_mut().zip(id.bytes()) {
            *byte = from;
        }
        Timed {
            at,
            prefix: u32::from_be_bytes(prefix),
            id: Arc::clone(id),
        }
    }
}

impl PartialEq for Timed {
    fn eq(&self, other: &Timed) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Timed) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    /// (instant, id), as a tuple would order them; the prefix only decides sooner.
    fn cmp(&self, other: &Timed) -> std::cmp::Ordering {
        self.at
            .cmp(&other.at)
            .then(self.prefix.cmp(&other.prefix))
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// Jobs by id: one pointer per job in the table, keyed by the id inside the job, so
/// the id is not kept twice (a `HashMap<Arc<str>, Entry>` would also keep each `Entry`
/// inline in a table that is up to half empty).
#[derive(Default)]
pub(super) struct JobTable {
    table: hashbrown::HashTable<Box<Entry>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for JobTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTable")
            .field("len", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl JobTable {
    fn hash(&self, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, id)
    }

    pub(super) fn get(&self, id: &str) -> Option<&Entry> {
        self.table
            .find(self.hash(id), |entry| &*entry.job.id == id)
            .map(|entry| &**entry)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let hash = self.hash(id);
        self.table
            .find_mut(hash, |entry| &*entry.job.id == id)
            .map(|entry| &mut **entry)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Adds `entry` unless a job with its id is there; `false` then.
    pub(super) fn insert_new(&mut self, entry: Entry) -> bool {
        let hash = self.hash(&entry.job.id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |held| held.job.id == entry.job.id,
            |held| std::hash::BuildHasher::hash_one(hasher, &*held.job.id),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(Box::new(entry));
                true
            }
        }
    }

    /// Adds or overwrites the job with `entry`'s id.
    pub(super) fn insert(&mut self, entry: Entry) {
        let hash = self.hash(&entry.job.id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |held| held.job.id == entry.job.id,
            |held| std::hash::BuildHasher::hash_one(hasher, &*held.job.id),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut occupied) => **occupied.get_mut() = entry,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(Box::new(entry));
            }
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Box<Entry>> {
        let hash = self.hash(id);
        self.table
            .find_entry(hash, |entry| &*entry.job.id == id)
            .ok()
            .map(|occupied| occupied.remove().0)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter().map(|entry| &**entry)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn clear(&mut self) {
        self.table.clear();
    }
}
