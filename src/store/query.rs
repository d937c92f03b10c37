//! Listing jobs a page at a time, filtered: what the web page and `GET /jobs?limit=…`
//! ask a store for, so that a table over a million jobs never reads them all.
//!
//! [`JobQuery::matches`] is the one definition of what a filter means; stores that
//! narrow in their own query language (SQL `LIKE`) still confirm each row with it.

use crate::job::Job;

/// Which jobs to list, and which page of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only paused (`Some(true)`) or only unpaused (`Some(false)`) jobs.
    pub paused: Option<bool>,
    /// Only the jobs set aside (`Some(true)`): neither paused nor with a next run time,
    /// which is a one-off job kept as `failed` after its attempts were used up (see
    /// [`crate::job::JobFailure`]) or a job set aside as `broken`; or only the others
    /// (`Some(false)`).
    pub failed: Option<bool>,
    /// Only the jobs set aside this way: a one-off job kept as failed, or a job set
    /// aside as broken ([`SetAside`]). The two are listed apart, each with its own
    /// total, by the store's own query (a set-aside job is neither paused nor due, so
    /// this implies `failed = Some(true)`).
    pub set_aside: Option<SetAside>,
    /// Only jobs of this task (exact name).
    pub task: Option<String>,
    /// Only jobs whose id or name contains this text, ignoring case.
    pub text: Option<String>,
    /// How many matching jobs to skip, in list order.
    pub offset: usize,
    /// The most jobs to return.
    pub limit: usize,
}

/// Why a job is set aside: neither paused nor with a next run time (`Job::state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAside {
    /// A one-off job whose attempts were used up ([`crate::job::JobFailure`]).
    Failed,
    /// A job whose trigger could not be evaluated within its budget
    /// (docs/lifecycle.md); a new trigger ends it.
    Broken,
}

impl SetAside {
    /// How a job is set aside, given where it stands: `None` when it is paused or has a
    /// next run time. A job marked broken is `Broken` whatever else it has, as
    /// [`Job::state`] says; any other is `Failed`.
    pub fn of(paused: bool, has_next_run_time: bool, broken: bool) -> Option<SetAside> {
        match (paused || has_next_run_time, broken) {
            (true, _) => None,
            (false, true) => Some(SetAside::Broken),
            (false, false) => Some(SetAside::Failed),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct JobPage {
    /// The jobs of the page, by next run time (paused ones last), then by id.
    pub jobs: Vec<Job>,
    /// How many jobs match the query in all.
    pub total: u64,
}

impl JobQuery {
    /// Whether `job` passes the filters (paging aside).
    pub fn matches(&self, job: &Job) -> bool {
        self.matches_fields(
            &job.id,
            &job.name,
            &job.task,
            job.paused,
            SetAside::of(
                job.paused,
                job.next_run_time.is_some(),
                job.retry.broken.is_some(),
            ),
        )
    }

    /// [`JobQuery::matches`] on the fields it looks at, for stores that read those
    /// without decoding the whole job (`set_aside`: [`SetAside::of`]).
    pub fn matches_fields(
        &self,
        id: &str,
        name: &str,
        task: &str,
        paused: bool,
        set_aside: Option<SetAside>,
    ) -> bool {
        if self.paused.is_some_and(|wanted| wanted != paused) {
            return false;
        }
        if self
            .failed
            .is_some_and(|wanted| wanted != set_aside.is_some())
        {
            return false;
        }
        if self.set_aside.is_some() && self.set_aside != set_aside {
            return false;
        }
        if self.task.as_deref().is_some_and(|wanted| wanted != task) {
            return false;
        }
        match self.text.as_deref().filter(|text| !text.is_empty()) {
            None => true,
            Some(text) => {
                let text = text.to_lowercase();
                id.to_lowercase().contains(&text) || name.to_lowercase().contains(&text)
            }
        }
    }
}

/// The list order: by next run time with paused jobs (no next run) last, then by id.
pub fn list_order(left: &Job, right: &Job) -> std::cmp::Ordering {
    let key = |job: &Job| (job.next_run_time.is_none(), job.next_run_time);
    key(left)
        .cmp(&key(right))
        .then_with(|| left.id.cmp(&right.id))
}

/// Pages `jobs` (in any order) by `query`: the default for stores without a query
/// language of their own.
pub fn page_of(mut jobs: Vec<Job>, query: &JobQuery) -> JobPage {
    jobs.retain(|job| query.matches(job));
    jobs.sort_by(list_order);
    let total = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
    let jobs = jobs
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect();
    JobPage { jobs, total }
}
