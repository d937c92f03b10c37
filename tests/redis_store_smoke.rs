//! The Redis store's own tests: what the shared conformance suite cannot see from the
//! trait (the key layout, the quarantine of unreadable jobs, releases after a lease was
//! taken over, instance slots expiring, reconnecting after a restart) and its speed.
//!
//! Like the conformance suite, each test uses its own key prefix on the local Redis
//! (`KAIROS_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/`), deletes its keys at the
//! end, and prints `SKIP <reason>` when the server is unreachable, unless
//! `KAIROS_REQUIRE_SERVICES=1`. The reconnect test runs a private `redis-server` on a
//! free port and skips the same way when there is none.

#![allow(clippy::unwrap_used)]

mod common;

use common::{job, release, secs, t0, LEASE};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kairos::job::Job;
use kairos::store::prelude::*;
use kairos::store::{Release, StoreErrorKind};
use redis::aio::MultiplexedConnection;
use serde_json::json;

fn url() -> String {
    std::env::var("KAIROS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// Skips (or, with `KAIROS_REQUIRE_SERVICES=1`, fails) a test that cannot run here.
fn skip(reason: &str) {
    let required = std::env::var("KAIROS_REQUIRE_SERVICES").as_deref() == Ok("1");
    assert!(!required, "{reason} (KAIROS_REQUIRE_SERVICES=1)");
    println!("SKIP {reason}");
}

/// A store under a fresh prefix, plus a raw connection to look at its keys.
struct Fixture {
    store: Arc<dyn JobStore>,
    raw: MultiplexedConnection,
    prefix: String,
}

impl Fixture {
    async fn open(instance_ttl: Duration) -> Option<Fixture> {
        let prefix = format!("s{:08x}:", fastrand::u32(..));
        let store = match kairos::store::redis::connect(&url(), &prefix, instance_ttl).await {
            Ok(store) => store,
            Err(error) => {
                skip(&format!("Redis at {}: {error}", url()));
                return None;
            }
        };
        let raw = redis::Client::open(url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Some(Fixture { store, raw, prefix })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &mut redis::Cmd) -> T {
        command.query_async(&mut self.raw.clone()).await.unwrap()
    }

    async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .query(redis::cmd("KEYS").arg(format!("{}*", self.prefix)))
            .await;
        keys.sort();
        keys
    }

    /// Deletes every key of this test.
    async fn close(self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            self.query::<i64>(redis::cmd("DEL").arg(keys)).await;
        }
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|job| job.id.as_str()).collect()
}

#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    store.add_job(job("a", Some(t0()))).await.unwrap();
    store.add_job(job("p", None)).await.unwrap();
    let taken = store
        .acquire_due_jobs("node1", t0(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["a"]);
    assert!(store.claim_instance("a", "node1", 1).await.unwrap());
    let finished = t0() + secs(1);
    store
        .record_run(kairos::history::RunRecord {
            run_id: "r1".to_owned(),
            job_id: "a".to_owned(),
            scheduled_time: t0(),
            started_at: Some(t0()),
            finished_at: finished,
            outcome: kairos::history::RunOutcome::Success,
            error: None,
            output: None,
            attempt: 1,
        })
        .await
        .unwrap();
    let expected: Vec<String> = [
        "inst:a",
        "jobs",
        "leases",
        "leasesched",
        "next",
        "owners",
        "revs",
        "run",
        "runjobs",
        "runok:a",
        "runs",
        "runs:a",
        "runseq",
        "sched",
        "seq",
    ]
    .iter()
    .map(|name| fixture.key(name))
    .collect();
    assert_eq!(fixture.keys().await, expected);
    // The lease: expiry as the score, the owner beside it.
    let expiry: f64 = fixture
        .query(redis::cmd("ZSCORE").arg(fixture.key("leases")).arg("a"))
        .await;
    assert_eq!(expiry as i64, (t0() + secs(60)).timestamp_micros());
    let owner: String = fixture
        .query(redis::cmd("HGET").arg(fixture.key("owners")).arg("a"))
        .await;
    assert_eq!(owner, "node1");
    // The schedule version the lease took: the job's, which its add set to 0.
    let taken: String = fixture
        .query(redis::cmd("HGET").arg(fixture.key("leasesched")).arg("a"))
        .await;
    assert_eq!(taken, "0");
    // A paused job has no next run time and is in no index.
    let next: Option<String> = fixture
        .query(redis::cmd("HGET").arg(fixture.key("next")).arg("p"))
        .await;
    assert_eq!(next, None);
    fixture.close().await;
}

#[tokio::test]
async fn an_unreadable_job_is_quarantined_until_it_is_rewritten() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    store
        .add_job(job("good", Some(t0() + secs(10))))
        .await
        .unwrap();
    store
        .add_job(job("bad", Some(t0() + secs(5))))
        .await
        .unwrap();
    fixture
        .query::<i64>(
            redis::cmd("HSET")
                .arg(fixture.key("jobs"))
                .arg("bad")
                .arg(r#"{"id": "bad", "trigger": 7}"#),
        )
        .await;
    let now = t0() + secs(10);
    let taken = store.acquire_due_jobs("one", now, 10, LEASE).await.unwrap();
    assert_eq!(
        ids(&taken),
        ["good"],
        "the bad job does not block the good one"
    );
    let broken: Vec<String> = fixture
        .query(redis::cmd("SMEMBERS").arg(fixture.key("broken")))
        .await;
    assert_eq!(broken, ["bad"]);
    // Out of every index: never offered, no wake-up for it.
    store
        .release_jobs("one", &[release(&taken[0], Some(t0() + secs(1000)))])
        .await
        .unwrap();
    assert_eq!(
        store.next_run_time().await.unwrap(),
        Some(t0() + secs(1000))
    );
    assert!(store
        .acquire_due_jobs("one", now + secs(500), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    // Asking for it by id says it is corrupt; the list leaves it out.
    let error = store.get_job("bad").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert_eq!(ids(&store.get_jobs().await.unwrap()), ["good"]);
    // It still holds its id, and a rewrite puts it back in service.
    assert_eq!(
        store
            .add_job(job("bad", Some(t0())))
            .await
            .unwrap_err()
            .kind(),
        StoreErrorKind::Conflict
    );
    store
        .replace_job(job("bad", Some(t0() + secs(20))))
        .await
        .unwrap();
    let again = store
        .acquire_due_jobs("one", now + secs(500), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&again), ["bad"]);
    let broken: Vec<String> = fixture
        .query(redis::cmd("SMEMBERS").arg(fixture.key("broken")))
        .await;
    assert!(broken.is_empty());
    fixture.close().await;
}

#[tokio::test]
async fn a_late_release_does_not_end_the_lease_of_the_scheduler_that_took_over() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    store
        .add_job(job("a", Some(t0() + secs(10))))
        .await
        .unwrap();
    let now = t0() + secs(10);
    let slow = store
        .acquire_due_jobs("slow", now, 10, LEASE)
        .await
        .unwrap();
    // The slow scheduler's lease runs out; another one takes the job.
    let later = now + secs(61);
    let fast = store
        .acquire_due_jobs("fast", later, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&fast), ["a"]);
    // The slow one comes back: its release must not put the job back among the due
    // ones under the fast one's feet.
    store
        .release_jobs("slow", &[release(&slow[0], Some(t0() + secs(20)))])
        .await
        .unwrap();
    assert!(store
        .acquire_due_jobs("third", later, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_run_time().await.unwrap(), Some(later + secs(60)));
    // The holder's release decides.
    store
        .release_jobs("fast", &[release(&fast[0], Some(t0() + secs(80)))])
        .await
        .unwrap();
    let read = store.get_job("a").await.unwrap().unwrap();
    assert_eq!(read.next_run_time, Some(t0() + secs(80)));
    fixture.close().await;
}

#[tokio::test]
async fn a_job_added_again_under_its_id_is_not_overwritten_by_a_late_release() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    store
        .add_job(job("a", Some(t0() + secs(10))))
        .await
        .unwrap();
    let taken = store
        .acquire_due_jobs("one", t0() + secs(10), 10, LEASE)
        .await
        .unwrap();
    // Removed and added again (with another schedule) while it ran.
    store.remove_job("a").await.unwrap();
    let fresh = store
        .add_job(job("a", Some(t0() + secs(300))))
        .await
        .unwrap();
    assert_ne!(
        fresh.revision, taken[0].revision,
        "revisions are never reused"
    );
    store
        .release_jobs("one", &[release(&taken[0], None)])
        .await
        .unwrap();
    let read = store
        .get_job("a")
        .await
        .unwrap()
        .expect("the new job stays");
    assert_eq!(read.next_run_time, Some(t0() + secs(300)));
    // remove_all_jobs keeps the counter too.
    store.remove_all_jobs().await.unwrap();
    let after = store.add_job(job("a", Some(t0()))).await.unwrap();
    assert!(after.revision > fresh.revision);
    fixture.close().await;
}

#[tokio::test]
async fn instance_slots_are_per_owner_and_expire() {
    let ttl = Duration::from_millis(300);
    let Some(fixture) = Fixture::open(ttl).await else {
        return;
    };
    let store = &fixture.store;
    assert!(store.claim_instance("a", "node1", 1).await.unwrap());
    // "node10" holds no slot: releasing must not free node1's.
    store.release_instance("a", "node10").await.unwrap();
    assert!(!store.claim_instance("a", "node10", 1).await.unwrap());
    // node1 dies without releasing: after the time-to-live its slot is free.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(store.claim_instance("a", "node10", 1).await.unwrap());
    store.release_instance("a", "node10").await.unwrap();
    assert!(store.claim_instance("a", "node2", 1).await.unwrap());
    // A removed job's slots stay, so a re-added one cannot run beside its old runs.
    store.add_job(job("a", Some(t0()))).await.unwrap();
    store.remove_job("a").await.unwrap();
    assert!(!store.claim_instance("a", "node3", 1).await.unwrap());
    fixture.close().await;
}

#[tokio::test]
async fn args_come_back_byte_for_byte() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    let mut odd = job("odd", Some(t0() + secs(10)));
    // What a Lua cjson round trip would damage: [] vs {}, big integers, unicode.
    odd.args =
        json!({"empty": [], "object": {}, "big": 9_007_199_254_740_993_u64, "text": "é\u{1f}"});
    store.add_job(odd.clone()).await.unwrap();
    let taken = store
        .acquire_due_jobs("one", t0() + secs(10), 10, LEASE)
        .await
        .unwrap();
    store
        .release_jobs("one", &[release(&taken[0], Some(t0() + secs(20)))])
        .await
        .unwrap();
    let read = store.get_job("odd").await.unwrap().unwrap();
    assert_eq!(read.args, odd.args);
    assert_eq!(read.next_run_time, Some(t0() + secs(20)));
    fixture.close().await;
}

/// Not a benchmark, a sanity check of the orders of magnitude (printed with
/// `--nocapture`): a batch of 1000 moves in one script call each way.
#[tokio::test]
async fn a_thousand_jobs_in_one_batch() {
    let Some(fixture) = Fixture::open(Duration::from_secs(60)).await else {
        return;
    };
    let store = &fixture.store;
    let count = 1000;
    let jobs = |tag: &str| -> Vec<Job> {
        (0..count)
            .map(|index| job(&format!("{tag}{index:04}"), Some(t0() + secs(index % 60))))
            .collect()
    };

    let one_by_one = jobs("s");
    let started = Instant::now();
    for job in one_by_one {
        store.add_job(job).await.unwrap();
    }
    let sequential = started.elapsed();

    let concurrent_jobs = jobs("c");
    let started = Instant::now();
    let tasks: Vec<_> = concurrent_jobs
        .into_iter()
        .map(|job| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.add_job(job).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let concurrent = started.elapsed();

    let batch = jobs("b");
    let started = Instant::now();
    store.add_jobs(batch).await.unwrap();
    let batched = started.elapsed();

    let now = t0() + secs(60);
    let started = Instant::now();
    let taken = store
        .acquire_due_jobs("one", now, 3 * count as usize, LEASE)
        .await
        .unwrap();
    let acquire = started.elapsed();
    assert_eq!(taken.len(), 3 * count as usize);
    let releases: Vec<Release> = taken
        .iter()
        .map(|job| release(job, Some(t0() + secs(120))))
        .collect();
    let started = Instant::now();
    store.release_jobs("one", &releases).await.unwrap();
    let release_time = started.elapsed();
    assert_eq!(store.next_run_time().await.unwrap(), Some(t0() + secs(120)));

    let per_second = |elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    println!(
        "1000 add_job one by one: {sequential:?} ({:.0}/s); 1000 concurrent: {concurrent:?} ({:.0}/s); \
         add_jobs(1000): {batched:?} ({:.0}/s); acquire 3000: {acquire:?}; release 3000: {release_time:?}",
        per_second(sequential),
        per_second(concurrent),
        per_second(batched),
    );
    fixture.close().await;
}

/// A private `redis-server` on a free port, stopped when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(port: u16) -> Option<Server> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Server { child, port })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_port(port: u16) -> bool {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn the_store_reconnects_after_a_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap();
    let Some(server) = Server::start(port) else {
        skip("no redis-server on PATH to restart");
        return;
    };
    assert!(wait_for_port(port).await, "redis-server did not start");
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let store = kairos::store::redis::connect(&url, "r:", Duration::from_secs(60))
        .await
        .unwrap();
    store.add_job(job("a", Some(t0()))).await.unwrap();

    drop(server);
    let started = Instant::now();
    let error = store.get_job("a").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The same port again, empty (no persistence) and with no scripts loaded: the
    // store reconnects by itself and EVALSHA falls back to loading them.
    let _server = Server::start(port).unwrap();
    assert!(wait_for_port(port).await, "redis-server did not restart");
    let mut outcome = None;
    for _ in 0..50 {
        match store.add_job(job("b", Some(t0()))).await {
            Ok(added) => {
                outcome = Some(added);
                break;
            }
            Err(error) => {
                assert_eq!(error.kind(), StoreErrorKind::Unavailable);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(outcome.is_some(), "the store never reconnected");
    let taken = store
        .acquire_due_jobs("one", t0(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(ids(&taken), ["b"]);
}
