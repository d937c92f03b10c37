//! One-off jobs added over HTTP: the order service's load.
//!
//! Starts the real `kairos run` binary per store (a fresh SQLite file; the local
//! PostgreSQL with a unique table prefix, dropped afterwards), then 32 concurrent
//! clients each `POST /api/v1/jobs` one date job after another (due in 2099, so nothing
//! fires) for a fixed time. Reports adds per second and request latency p50/p99 as one
//! JSON line per store. Target: over 5,000 adds/s on PostgreSQL with p99 under 20 ms.
//!
//! The clients run in this process on a single-threaded runtime, on the same machine
//! as the daemon: they take CPU the daemon would otherwise have, as a co-located
//! service would.
//!
//! Usage: `cargo bench --bench http_adds -- [--quick] [--seconds S] [--clients N]
//! [URL...]`. Default URLs: `sqlite` (a fresh file) and
//! `postgres://postgres@127.0.0.1:5432/test` (`KAIROS_TEST_POSTGRES_URL` overrides).
//! 10 s per store, `--quick` 2 s.
//!
//! `--store NAME` names the store in the report. `--external API_URL --system NAME`
//! drives another server that takes the same request instead of starting kairos: the
//! benchmark suite's APScheduler peer (benches/compare/apscheduler_http_peer.py),
//! measured by the very same clients.

#[path = "common/daemon.rs"]
mod daemon;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::{drop_tables, Daemon, TOKEN};

struct Settings {
    clients: usize,
    duration: Duration,
    urls: Vec<String>,
    /// Another server's API base URL, with the system and store names it reports.
    external: Option<External>,
    /// `--store`: the store's name in the report, instead of one made from its URL.
    store_label: Option<String>,
}

struct External {
    url: String,
    system: String,
    store: String,
}

fn settings() -> Settings {
    let mut settings = Settings {
        clients: 32,
        duration: Duration::from_secs(10),
        urls: Vec::new(),
        external: None,
        store_label: None,
    };
    let (mut external_url, mut system, mut store) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => settings.duration = Duration::from_secs(2),
            "--seconds" => {
                if let Some(seconds) = args.next().and_then(|value| value.parse().ok()) {
                    settings.duration = Duration::from_secs(seconds);
                }
            }
            "--external" => external_url = args.next(),
            "--system" => system = args.next(),
            "--store" => store = args.next(),
            "--clients" => {
                if let Some(clients) = args.next().and_then(|value| value.parse().ok()) {
                    settings.clients = clients;
                }
            }
            // `cargo bench` passes `--bench`; other flags are criterion's, not ours.
            flag if flag.starts_with("--") => {}
            url => settings.urls.push(url.to_owned()),
        }
    }
    settings.store_label = store.clone();
    if let Some(url) = external_url {
        settings.external = Some(External {
            url,
            system: system.unwrap_or_else(|| "external".to_owned()),
            store: store.unwrap_or_else(|| "unknown".to_owned()),
        });
    }
    if settings.urls.is_empty() {
        settings.urls = vec![
            "sqlite".to_owned(),
            std::env::var("KAIROS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        ];
    }
    settings
}

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // reqwest is built without a default TLS provider; the API is plain HTTP anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Some(external) = &settings.external {
        match runtime.block_on(measure(&external.url, &settings)) {
            Ok(result) => report(&external.system, &external.store, &settings, &result),
            Err(error) => eprintln!("http_adds: {}: {error}", external.url),
        }
        return;
    }
    for url in &settings.urls {
        let dir = std::env::temp_dir().join(format!(
            "kairos-http-adds-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let prefix = format!("h{:08x}_", fastrand::u32(..));
        let (store_url, store_name) = match url.as_str() {
            "sqlite" => (format!("sqlite://{}/kairos.db", dir.display()), "sqlite"),
            other if other.starts_with("postgres") => (other.to_owned(), "postgres"),
            other => (other.to_owned(), other.split(':').next().unwrap_or("store")),
        };
        let outcome = match Daemon::start(&dir, &store_url, &prefix) {
            Ok(daemon) => {
                let measured = runtime.block_on(measure(&daemon.base_url, &settings));
                drop(daemon);
                measured
            }
            Err(error) => Err(error),
        };
        runtime.block_on(drop_tables(&store_url, &prefix));
        let _ = std::fs::remove_dir_all(&dir);
        match outcome {
            Ok(result) => {
                let label = settings.store_label.as_deref().unwrap_or(store_name);
                report("kairos", label, &settings, &result);
            }
            Err(error) => eprintln!("http_adds: {store_name}: {error}"),
        }
    }
}

/// One JSON line, in the shape the benchmark suite's report reads.
fn report(system: &str, store: &str, settings: &Settings, result: &Measured) {
    println!(
        "{}",
        serde_json::json!({
            "bench": "http_adds",
            "system": system,
            "workload": "http",
            "store": store,
            "clients": settings.clients,
            "seconds": result.seconds,
            "adds": result.adds,
            "adds_per_s": (result.adds as f64 / result.seconds).round(),
            "p50_ms": round3(result.p50_ms),
            "p99_ms": round3(result.p99_ms),
            "max_ms": round3(result.max_ms),
            "errors": result.errors,
        })
    );
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

struct Measured {
    seconds: f64,
    adds: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// `settings.clients` clients adding jobs for `settings.duration`.
async fn measure(base_url: &str, settings: &Settings) -> Result<Measured, String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.clients)
        .build()
        .map_err(|error| error.to_string())?;
    let jobs_url = format!("{base_url}/jobs");
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + settings.duration;
    let mut handles = Vec::new();
    for client_index in 0..settings.clients {
        let client = client.clone();
        let jobs_url = jobs_url.clone();
        let errors = errors.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut order = 0u64;
            while Instant::now() < deadline {
                order += 1;
                let body = serde_json::json!({
                    "id": format!("order-cancel-{client_index}-{order}"),
                    "task": "orders.cancel",
                    "args": {"order_id": client_index as u64 * 1_000_000_000 + order},
                    "trigger": {"type": "date", "run_date": "2099-01-01T00:00:00Z"},
                });
                let sent = Instant::now();
                let response = client
                    .post(&jobs_url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                let created = match response {
                    Ok(response) => {
                        let status = response.status();
                        // The body is read so that the latency covers the whole answer.
                        let _ = response.bytes().await;
                        status == reqwest::StatusCode::CREATED
                    }
                    Err(_) => false,
                };
                if created {
                    latencies.push(sent.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.map_err(|error| error.to_string())?);
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ms = |fraction: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() - 1) as f64 * fraction).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    Ok(Measured {
        seconds,
        adds: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
    })
}
