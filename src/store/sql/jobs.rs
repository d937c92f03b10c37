//! The jobs of the SQL store: the [`Jobs`] impl (adding, changing, reading, listing and
//! counting jobs), and reading job rows, which `leases.rs` shares. The other parts of
//! the contract are implemented where their statements are: [`DueJobs`] in
//! `leases.rs`, [`InstanceSlots`] and [`RunHistory`] in `history.rs`, [`Nodes`] in
//! `nodes.rs`, [`Cluster`] in `cluster.rs`.
//!
//! [`DueJobs`]: crate::store::DueJobs
//! [`InstanceSlots`]: crate::store::InstanceSlots
//! [`RunHistory`]: crate::store::RunHistory
//! [`Nodes`]: crate::store::Nodes
//! [`Cluster`]: crate::store::Cluster
//!
//! Every statement is the same on all dialects but for what [`Dialect`] supplies (row
//! locks, the claim's `SKIP LOCKED`, placeholders). See the ground rules in
//! [`super`] for revisions, leases and broken rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::driver::{Arg, SqlDb};
use super::{
    execute_on, failure, instant, is_conflict, marks, micros, padded, Dialect, RowOf, SqlStore,
    CHUNK,
};
use crate::job::Job;
use crate::store::query::{list_order, SetAside};
use crate::store::{wake, JobListing, JobPage, JobQuery, Jobs, StoreError};

/// The columns every job read selects, in this order (see [`read_row`]).
pub(super) const JOB_COLUMNS: &str = "id, job, next_run_time, revision";

/// How often `replace_job` retries when a concurrent insert of the same id won.
const REPLACE_ATTEMPTS: usize = 3;

/// A job row as read: its id, and the job or why it cannot be read.
pub(super) struct JobRow {
    pub(super) id: String,
    pub(super) job: Result<Job, String>,
}

/// Reads a row of [`JOB_COLUMNS`]. Only the id must decode; a bad job is reported in
/// [`JobRow::job`] so the caller can skip it and go on.
pub(super) fn read_row<D: Dialect>(row: &RowOf<D>) -> Result<JobRow, StoreError> {
    let id = D::Database::text(row, 0)
        .map_err(failure::<D>)?
        .ok_or_else(|| StoreError::corrupt("a job row without an id".to_owned()))?;
    let job = (|| {
        let json = D::Database::text(row, 1)
            .map_err(|error| error.to_string())?
            .ok_or("no job data")?;
        let next = D::Database::int(row, 2).map_err(|error| error.to_string())?;
        let revision = D::Database::int(row, 3).map_err(|error| error.to_string())?;
        let mut job: Job = serde_json::from_str(&json).map_err(|error| error.to_string())?;
        // The columns are the truth for what the store itself writes.
        job.id.clone_from(&id);
        job.next_run_time = next
            .map(instant)
            .transpose()
            .map_err(|error| error.to_string())?;
        job.revision = revision
            .and_then(|revision| u64::try_from(revision).ok())
            .ok_or("no valid revision")?;
        Ok::<Job, String>(job)
    })();
    Ok(JobRow { id, job })
}

/// The job as stored: its next run time truncated to microseconds, and its JSON.
fn stored(job: &mut Job) -> Result<(Option<i64>, String), StoreError> {
    let next = job.next_run_time.map(micros);
    job.next_run_time = next.and_then(DateTime::from_timestamp_micros);
    let json = serde_json::to_string(job)
        .map_err(|error| StoreError::corrupt(format!("job {:?}: {error}", job.id)))?;
    Ok((next, json))
}

/// Whether writing `job` over the locked row (`revision, next_run_time, job`) changes
/// its schedule ([`crate::store::changes_schedule`]). The JSON's `paused` is the
/// column's: both are written only here. A stored job that cannot be read counts as
/// changed: its schedule version moves, so a release taken before leaves the new write
/// alone.
fn changes_stored_schedule<D: Dialect>(row: &RowOf<D>, job: &Job) -> Result<bool, StoreError> {
    let next = D::Database::int(row, 1).map_err(failure::<D>)?;
    let json = D::Database::text(row, 2).map_err(failure::<D>)?;
    let Some(before) = json.and_then(|json| serde_json::from_str::<Job>(&json).ok()) else {
        return Ok(true);
    };
    let next = next.and_then(|next| instant(next).ok());
    Ok(crate::store::changes_schedule(
        &before.trigger,
        next,
        before.paused,
        job,
    ))
}

/// Logs each unreadable job with its id and why.
pub(super) fn report_broken<D: Dialect>(broken: &[(String, String)]) {
    for (id, reason) in broken {
        tracing::warn!(
            dialect = D::NAME,
            job_id = %id,
            %reason,
            "skipping a stored job that cannot be read; marked broken"
        );
    }
}

/// A job id list padded to [`padded`] length, as bound values.
pub(super) fn id_args<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<Arg> {
    let mut args: Vec<Arg> = ids.into_iter().map(Arg::from).collect();
    if let Some(last) = args.last().cloned() {
        args.resize(padded(args.len()), last);
    }
    args
}

impl<D: Dialect> SqlStore<D> {
    /// Logs unreadable rows and marks them broken, so they leave the due set. Reads go
    /// on without them even if the mark cannot be written.
    async fn quarantine(&self, broken: Vec<(String, String)>) {
        if broken.is_empty() {
            return;
        }
        report_broken::<D>(&broken);
        for chunk in broken.chunks(CHUNK) {
            let sql = self.mark_broken_sql(chunk.len());
            let ids = id_args(chunk.iter().map(|(id, _)| id.as_str()));
            if let Err(error) = self.execute(&sql, ids).await {
                tracing::warn!(dialect = D::NAME, %error, "could not mark broken jobs");
            }
        }
    }

    pub(super) fn mark_broken_sql(&self, count: usize) -> String {
        self.sql(&format!(
            "UPDATE {{p}}jobs SET broken = 1, lease_owner = NULL, lease_expires = NULL \
             WHERE id IN ({})",
            marks(padded(count))
        ))
    }

    /// Reads rows of [`JOB_COLUMNS`], quarantining the unreadable ones.
    async fn read_jobs(&self, rows: Vec<RowOf<D>>) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in &rows {
            let JobRow { id, job } = read_row::<D>(row)?;
            match job {
                Ok(job) => jobs.push(job),
                Err(reason) => broken.push((id, reason)),
            }
        }
        self.quarantine(broken).await;
        Ok(jobs)
    }

    /// Overwrites job `job.id` in a transaction; `Ok(None)` if there is no such job
    /// and `insert_missing` is false, `Ok(Some(Err(current)))` and nothing written if
    /// `expected` is given and the row's revision is not it. The lease stays: a job
    /// changed while acquired is still acquired.
    async fn write_job(
        &self,
        mut job: Job,
        insert_missing: bool,
        expected: Option<u64>,
    ) -> Result<Option<Result<Job, u64>>, StoreError> {
        let (next, _) = stored(&mut job)?;
        // The schedule as stored, to tell whether this write changes it (the store's
        // ground rules on schedule versions).
        let lock = self.sql(&format!(
            "SELECT revision, next_run_time, job FROM {{p}}jobs WHERE id = ?{}",
            D::LOCK_ROWS
        ));
        let update = self.sql(
            "UPDATE {p}jobs SET next_run_time = ?, paused = ?, revision = ?, broken = 0, job = ?, \
             schedule_version = schedule_version + ? WHERE id = ?",
        );
        let insert = self.sql(
            "INSERT INTO {p}jobs (id, next_run_time, paused, revision, broken, job) \
             VALUES (?, ?, ?, ?, 0, ?)",
        );
        for _ in 0..REPLACE_ATTEMPTS {
            let mut transaction = self.begin().await?;
            let rows = D::Database::fetch_all(&mut transaction, &lock, vec![job.id.clone().into()])
                .await
                .map_err(failure::<D>)?;
            let current = match rows.first() {
                Some(row) => Some(D::Database::int(row, 0).map_err(failure::<D>)?.unwrap_or(0)),
                None => None,
            };
            let schedule_bump = match rows.first() {
                Some(row) => i64::from(changes_stored_schedule::<D>(row, &job)?),
                None => 0,
            };
            if current.is_none() && !insert_missing {
                return Ok(None);
            }
            // Compared with the row locked, so no write lands between this and ours.
            let now = current.and_then(|current| u64::try_from(current).ok());
            if let (Some(expected), Some(now)) = (expected, now) {
                if expected != now {
                    return Ok(Some(Err(now)));
                }
            }
            let revision = self.revisions.after(current.unwrap_or(0));
            job.revision = u64::try_from(revision).unwrap_or(0);
            let (_, json) = stored(&mut job)?;
            let paused = i64::from(job.paused);
            let written = if current.is_some() {
                let args = vec![
                    next.into(),
                    paused.into(),
                    revision.into(),
                    json.into(),
                    schedule_bump.into(),
                    job.id.clone().into(),
                ];
                execute_on::<D>(&mut transaction, &update, args).await
            } else {
                let args = vec![
                    job.id.clone().into(),
                    next.into(),
                    paused.into(),
                    revision.into(),
                    json.into(),
                ];
                execute_on::<D>(&mut transaction, &insert, args).await
            };
            match written {
                // Another scheduler inserted the id between our read and our insert:
                // read again and overwrite it.
                Err(error) if is_conflict::<D>(&error) => continue,
                Err(error) => return Err(failure::<D>(error)),
                Ok(_) => {}
            }
            transaction.commit().await.map_err(failure::<D>)?;
            self.announce(job.next_run_time).await;
            return Ok(Some(Ok(job)));
        }
        Err(StoreError::unavailable(format!(
            "{}: job {:?} kept being written concurrently",
            D::NAME,
            job.id
        )))
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Inserts new jobs with one multi-row `INSERT` (atomic: all or none); the error
    /// is left as it is, so a conflict can be told apart.
    pub(super) async fn insert_jobs(
        &self,
        jobs: &mut [Job],
    ) -> Result<Result<(), sqlx::Error>, StoreError> {
        let mut args = Vec::with_capacity(jobs.len() * 5);
        for job in jobs.iter_mut() {
            let revision = self.revisions.after(0);
            job.revision = u64::try_from(revision).unwrap_or(0);
            let (next, json) = stored(job)?;
            args.extend([
                job.id.clone().into(),
                next.into(),
                i64::from(job.paused).into(),
                revision.into(),
                json.into(),
            ]);
        }
        let rows = vec!["(?, ?, ?, ?, 0, ?)"; jobs.len()].join(", ");
        let insert = format!(
            "INSERT INTO {{p}}jobs (id, next_run_time, paused, revision, broken, job) VALUES {rows}"
        );
        let earliest = wake::earliest(jobs.iter().map(|job| &job.next_run_time));
        let (Some(notify), Some(earliest)) = (D::NOTIFY, earliest) else {
            return Ok(self.run(&self.sql(&insert), args).await.map(drop));
        };
        // The wake-up rides in the insert's statement: one round trip instead of two
        // for a single add (BENCHMARKS.md), and PostgreSQL sends it when the insert commits.
        let sql = self.sql(&format!("WITH inserted AS ({insert} RETURNING 1) {notify}"));
        args.extend([
            wake::channel_name(&self.prefix).into(),
            wake::payload(earliest).into(),
        ]);
        Ok(self.run(&sql, args).await.map(drop))
    }

    /// Tells the schedulers listening on this store's channel that jobs were written,
    /// due from `earliest` on (`None`: all paused, nobody to wake). After the commit,
    /// so a woken node sees the rows. A failure is logged, not returned: the write
    /// succeeded, and the other nodes' poll interval bounds the delay.
    async fn announce(&self, earliest: Option<DateTime<Utc>>) {
        let (Some(notify), Some(earliest)) = (D::NOTIFY, earliest) else {
            return;
        };
        let args = vec![
            wake::channel_name(&self.prefix).into(),
            wake::payload(earliest).into(),
        ];
        if let Err(error) = self.execute(&self.sql(notify), args).await {
            tracing::warn!(dialect = D::NAME, %error, "could not announce a job change to the other nodes; they see it at their next poll");
        }
    }
}

#[async_trait]
impl<D: Dialect> Jobs for SqlStore<D> {
    async fn add_job(&self, job: Job) -> Result<Job, StoreError> {
        // Concurrent single adds share one INSERT and one commit (the HTTP add
        // rate); see group_commit.rs for why the semantics stay those of one insert.
        self.add_job_grouped(job).await
    }

    async fn add_jobs(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let mut added = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let mut chunk: Vec<Job> = jobs.by_ref().take(CHUNK).collect();
            match self.insert_jobs(&mut chunk).await? {
                Ok(()) => added.append(&mut chunk),
                // The statement added none of the chunk. One by one, the jobs before
                // the taken id stay added and the error names it, as the trait says.
                Err(error) if is_conflict::<D>(&error) => {
                    for job in chunk {
                        added.push(self.add_one(job).await?);
                    }
                }
                Err(error) => return Err(failure::<D>(error)),
            }
        }
        Ok(added)
    }

    async fn replace_job(&self, job: Job) -> Result<Job, StoreError> {
        let id = job.id.clone();
        match self.write_job(job, true, None).await? {
            Some(Ok(job)) => Ok(job),
            _ => Err(StoreError::NotFound(id)),
        }
    }

    async fn update_job(&self, job: Job) -> Result<Job, StoreError> {
        let id = job.id.clone();
        match self.write_job(job, false, None).await? {
            Some(Ok(job)) => Ok(job),
            _ => Err(StoreError::NotFound(id)),
        }
    }

    async fn update_job_if(&self, job: Job, revision: u64) -> Result<Result<Job, u64>, StoreError> {
        let id = job.id.clone();
        self.write_job(job, false, Some(revision))
            .await?
            .ok_or(StoreError::NotFound(id))
    }

    async fn remove_job(&self, id: &str) -> Result<(), StoreError> {
        // Instance slots stay: runs still going release them, and a job re-added under
        // the same id must not run beside them past its max_instances.
        let sql = self.sql("DELETE FROM {p}jobs WHERE id = ?");
        match self.execute(&sql, vec![id.into()]).await? {
            0 => Err(StoreError::NotFound(id.to_owned())),
            _ => Ok(()),
        }
    }

    async fn remove_all_jobs(&self) -> Result<(), StoreError> {
        self.execute(&self.sql("DELETE FROM {p}jobs"), Vec::new())
            .await
            .map(drop)
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let sql = self.sql(&format!("SELECT {JOB_COLUMNS} FROM {{p}}jobs WHERE id = ?"));
        let rows = self.fetch(&sql, vec![id.into()]).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let JobRow { id, job } = read_row::<D>(row)?;
        match job {
            Ok(job) => Ok(Some(job)),
            Err(reason) => {
                let message = format!("job {id:?}: {reason}");
                self.quarantine(vec![(id, reason)]).await;
                Err(StoreError::corrupt(message))
            }
        }
    }
}
#[async_trait]
impl<D: Dialect> JobListing for SqlStore<D> {
    async fn get_jobs(&self) -> Result<Vec<Job>, StoreError> {
        // Rows marked broken were reported when they were marked.
        let sql = self.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM {{p}}jobs WHERE broken = 0"
        ));
        let rows = self.fetch(&sql, Vec::new()).await?;
        let mut jobs = self.read_jobs(rows).await?;
        // Sorted here rather than in SQL, so ties order by id bytes on every database.
        jobs.sort_by(list_order);
        Ok(jobs)
    }

    async fn get_config_jobs(&self) -> Result<Vec<Job>, StoreError> {
        // No column marks them (yet), but only a config-owned job's JSON has the
        // `config_spec` key; a job whose args happen to contain the text is read and
        // filtered out. One scan without decoding a million API jobs.
        let sql = self.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM {{p}}jobs WHERE broken = 0 AND job LIKE ?"
        ));
        let rows = self
            .fetch(&sql, vec![Arg::from("%\"config_spec\":%")])
            .await?;
        let mut jobs = self.read_jobs(rows).await?;
        jobs.retain(Job::is_from_config);
        Ok(jobs)
    }

    async fn count_jobs(&self) -> Result<u64, StoreError> {
        let rows = self
            .fetch(&self.sql("SELECT COUNT(*) FROM {p}jobs"), Vec::new())
            .await?;
        let count = match rows.first() {
            Some(row) => D::Database::int(row, 0).map_err(failure::<D>)?,
            None => None,
        };
        Ok(count.map_or(0, |count| u64::try_from(count).unwrap_or(0)))
    }

    async fn count_job_states(&self) -> Result<crate::store::JobCounts, StoreError> {
        // One statement. The total is the database's row count (SQLite walks its
        // smallest index without reading a row); paused and set-aside jobs are the
        // rows without a next run time, found through the next_run_time index, and
        // unreadable rows through their partial index: no job is read or decoded.
        let sql = self.sql(
            "SELECT (SELECT COUNT(*) FROM {p}jobs), \
             (SELECT COUNT(*) FROM {p}jobs WHERE next_run_time IS NULL AND paused <> 0 AND broken = 0), \
             (SELECT COUNT(*) FROM {p}jobs WHERE next_run_time IS NULL AND paused = 0 AND broken = 0), \
             (SELECT COUNT(*) FROM {p}jobs WHERE broken <> 0)",
        );
        let rows = self.fetch(&sql, Vec::new()).await?;
        let mut counts = [0u64; 4];
        if let Some(row) = rows.first() {
            for (index, count) in counts.iter_mut().enumerate() {
                let value = D::Database::int(row, index).map_err(failure::<D>)?;
                *count = value.map_or(0, |value| u64::try_from(value).unwrap_or(0));
            }
        }
        let [total, paused, failed, unreadable] = counts;
        Ok(crate::store::JobCounts {
            // Unreadable rows are in no state: nothing runs them until rewritten.
            pending: total
                .saturating_sub(paused)
                .saturating_sub(failed)
                .saturating_sub(unreadable),
            paused,
            failed,
        })
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage, StoreError> {
        let mut conditions = vec!["broken = 0".to_owned()];
        let mut args = Vec::new();
        if let Some(paused) = query.paused {
            conditions.push("paused = ?".to_owned());
            args.push(Arg::from(i64::from(paused)));
        }
        // Set aside (a failed one-off job or a broken one) is the only kind neither
        // paused nor with a next run time (a finished one is removed), so the columns
        // tell, and the count needs no JSON.
        let failed = query.failed.or(query.set_aside.map(|_| true));
        match failed {
            Some(true) => {
                conditions.push("(paused = 0 AND next_run_time IS NULL)".to_owned());
            }
            Some(false) => {
                conditions.push("NOT (paused = 0 AND next_run_time IS NULL)".to_owned());
            }
            None => {}
        }
        // Text and task filters narrow by `LIKE` on the job's JSON, a superset of the
        // matches; each candidate is then confirmed by `JobQuery::matches_fields`.
        // Which way a job is set aside is in its JSON: those (few, each a job that
        // needs a person) are told apart by the confirmation below.
        let mut narrowed = query.set_aside.is_some();
        if let Some(task) = &query.task {
            narrowed = true;
            conditions.push("job LIKE ? ESCAPE '!'".to_owned());
            args.push(Arg::from(format!(
                "%{}%",
                like_escape(&format!("\"task\":{}", json_text(task)))
            )));
        }
        if let Some(text) = query.text.as_deref().filter(|text| !text.is_empty()) {
            narrowed = true;
            // LOWER() folds ASCII alike on every database; other text is left to the
            // confirmation, which folds Unicode.
            if text.is_ascii() {
                let inner = json_text(&text.to_lowercase());
                let inner = inner.trim_matches('"');
                conditions.push("LOWER(job) LIKE ? ESCAPE '!'".to_owned());
                args.push(Arg::from(format!("%{}%", like_escape(inner))));
            }
        }
        let filter = conditions.join(" AND ");
        let order = "ORDER BY CASE WHEN next_run_time IS NULL THEN 1 ELSE 0 END, next_run_time, id";
        if !narrowed {
            let count_sql = self.sql(&format!("SELECT COUNT(*) FROM {{p}}jobs WHERE {filter}"));
            let rows = self.fetch(&count_sql, args.clone()).await?;
            let total = match rows.first() {
                Some(row) => D::Database::int(row, 0).map_err(failure::<D>)?,
                None => None,
            };
            let page_sql = self.sql(&format!(
                "SELECT {JOB_COLUMNS} FROM {{p}}jobs WHERE {filter} {order} LIMIT ? OFFSET ?"
            ));
            args.push(Arg::from(i64::try_from(query.limit).unwrap_or(i64::MAX)));
            args.push(Arg::from(i64::try_from(query.offset).unwrap_or(i64::MAX)));
            let rows = self.fetch(&page_sql, args).await?;
            let mut jobs = self.read_jobs(rows).await?;
            jobs.sort_by(list_order);
            return Ok(JobPage {
                jobs,
                total: total.map_or(0, |total| u64::try_from(total).unwrap_or(0)),
            });
        }
        let sql = self.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM {{p}}jobs WHERE {filter} {order}"
        ));
        let rows = self.fetch(&sql, args).await?;
        let mut total: u64 = 0;
        let mut page = Vec::new();
        for row in rows {
            let Some(json) = D::Database::text(&row, 1).map_err(failure::<D>)? else {
                continue;
            };
            let id = D::Database::text(&row, 0).map_err(failure::<D>)?;
            let next_run_time = D::Database::int(&row, 2).map_err(failure::<D>)?;
            let confirmed = match (id, serde_json::from_str::<ListedFields<'_>>(&json)) {
                (Some(id), Ok(fields)) => query.matches_fields(
                    &id,
                    &fields.name,
                    &fields.task,
                    fields.paused,
                    SetAside::of(
                        fields.paused,
                        next_run_time.is_some(),
                        fields.broken.is_some(),
                    ),
                ),
                // Unreadable rows are left to a full read, which quarantines them.
                _ => true,
            };
            if !confirmed {
                continue;
            }
            let position = usize::try_from(total).unwrap_or(usize::MAX);
            if position >= query.offset && page.len() < query.limit {
                page.push(row);
            }
            total += 1;
        }
        let mut jobs = self.read_jobs(page).await?;
        jobs.sort_by(list_order);
        Ok(JobPage { jobs, total })
    }
}

/// The fields of a stored job's JSON that a listing filters on, read without decoding
/// the rest.
#[derive(serde::Deserialize)]
struct ListedFields<'a> {
    #[serde(borrow, default)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    task: std::borrow::Cow<'a, str>,
    #[serde(default)]
    paused: bool,
    /// Present on a job set aside as broken (`Job::retry`, flattened).
    #[serde(default)]
    broken: Option<serde::de::IgnoredAny>,
}

/// `text` as a JSON string literal, quotes included: how it appears in a stored job.
fn json_text(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `text` with `LIKE`'s wildcards and the escape character (`!`) escaped.
fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '%' | '_' | '!') {
            escaped.push('!');
        }
        escaped.push(character);
    }
    escaped
}
