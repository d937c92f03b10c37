//! The Redis store's wake-up subscriber: one pub/sub connection per scheduler,
//! SUBSCRIBEd to the channel put.lua PUBLISHes on (see `crate::store::wake`).
//!
//! A connection in subscribe mode can do nothing else, so it is not the store's
//! multiplexed connection. A connection that died quietly (a network cut sends no
//! reset) would wait forever, so it is PINGed every [`PING_EVERY`]; a ping without an
//! answer within [`CONNECT_TIMEOUT`] counts as a lost connection.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::CONNECT_TIMEOUT;
use crate::store::wake::{self, Backoff, WakeSender};
use crate::store::WakeUp;

/// How often an idle subscription checks that its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(15);

/// How long a connection must have held for its loss to be retried without growing
/// the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// Starts the subscriber task; it ends when the receiver is dropped.
pub(super) fn subscribe(client: ::redis::Client, channel: String) -> mpsc::Receiver<WakeUp> {
    let (sender, receiver) = mpsc::channel(wake::WAKE_CAPACITY);
    tokio::spawn(listen(client, channel, sender));
    receiver
}

/// Subscribes, forwards, and resubscribes with backoff whenever the connection is lost,
/// with a [`WakeUp::Resync`] each time it is up.
async fn listen(client: ::redis::Client, channel: String, sender: WakeSender) {
    let mut backoff = Backoff::default();
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        let connected = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => connected,
            () = sender.closed() => return,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                tracing::warn!(%error, channel, "redis: cannot subscribe to other nodes' changes; retrying (they are seen at the next poll meanwhile)");
                if backoff.sleep(&sender).await {
                    continue;
                }
                return;
            }
            Err(_) => {
                tracing::warn!(channel, "redis: subscribing timed out; retrying");
                if backoff.sleep(&sender).await {
                    continue;
                }
                return;
            }
        };
        // Changes made while nobody listened were not announced: look now.
        if sender.send(WakeUp::Resync).await.is_err() {
            return;
        }
        let up = std::time::Instant::now();
        let (mut sink, mut messages) = pubsub.split();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = tokio::time::sleep(PING_EVERY) => {
                    let ping = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<String>()).await;
                    if matches!(ping, Ok(Ok(_))) {
                        continue;
                    }
                    tracing::warn!(channel, "redis: the subscription's connection does not answer; reconnecting");
                    break;
                }
                () = sender.closed() => return,
            };
            let Some(message) = message else {
                tracing::warn!(
                    channel,
                    "redis: the subscription's connection was lost; reconnecting"
                );
                break;
            };
            let wake_up = message
                .get_payload::<String>()
                .map_or(WakeUp::Resync, |payload| wake::parse_payload(&payload));
            if sender.send(wake_up).await.is_err() {
                return;
            }
        }
        if up.elapsed() > STABLE_CONNECTION {
            backoff.reset();
        }
        if !backoff.sleep(&sender).await {
            return;
        }
    }
}
