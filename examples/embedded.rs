//! kairos embedded in a tokio program: the Rust twin of the news app's
//! `BackgroundScheduler` inside `create_app`.
//!
//! It registers a task, adds a cron job (in the app: statistics at 03:00; here every
//! two seconds so there is something to see) and a delayed one-off job (in the app: an
//! order to cancel if still unpaid after 30 minutes; here 3 seconds), prints the
//! scheduler's events for seven seconds and shuts down.
//!
//! Run it with `cargo run --example embedded`.

use std::time::Duration;

use kairos::job::JobSpec;
use kairos::scheduler::{Event, Scheduler};
use kairos::task::{TaskFailure, TaskRegistry, TaskRun};
use kairos::trigger::TriggerSpec;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tasks = TaskRegistry::with_builtins();
    tasks.register_fn("orders.cancel_if_unpaid", |run: TaskRun| async move {
        let order_id = run.args["order_id"]
            .as_u64()
            .ok_or_else(|| TaskFailure::new("args.order_id must be a number"))?;
        // The real task runs one conditional UPDATE, so a late or repeated run is harmless.
        Ok(format!("order {order_id}: cancelled (it was still unpaid)"))
    });
    tasks.register_fn("stats.report", |run: TaskRun| async move {
        Ok(format!(
            "statistics for the run scheduled at {}",
            run.scheduled_time
        ))
    });

    let scheduler = Scheduler::builder().tasks(tasks).build();
    let mut events = scheduler.subscribe();
    scheduler.start();

    let every_two_seconds: TriggerSpec =
        serde_json::from_value(json!({"type": "cron", "second": "*/2"}))?;
    scheduler
        .add_job(JobSpec::new("stats.report", every_two_seconds).with_id("stats"))
        .await?;
    let in_three_seconds: TriggerSpec =
        serde_json::from_value(json!({"type": "date", "delay": "3s"}))?;
    scheduler
        .add_job(
            JobSpec::new("orders.cancel_if_unpaid", in_three_seconds)
                .with_id("order-cancel-1042")
                .with_args(json!({"order_id": 1042})),
        )
        .await?;

    let listen = async {
        while let Ok(event) = events.recv().await {
            match event {
                Event::JobExecuted { run } => println!(
                    "{} ran (scheduled {}): {}",
                    run.job_id,
                    run.scheduled_time,
                    run.output.unwrap_or_default()
                ),
                Event::JobRemoved { job_id, .. } => println!("{job_id} is done and removed"),
                other => println!("{}", serde_json::to_string(&other).unwrap_or_default()),
            }
        }
    };
    // Listen for seven seconds, then stop.
    let _ = tokio::time::timeout(Duration::from_secs(7), listen).await;
    scheduler.shutdown(Some(Duration::from_secs(5))).await;
    Ok(())
}
