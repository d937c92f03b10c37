//! The API's connection handling: our own accept loop on hyper, because `axum::serve`
//! closes nothing by itself (docs/threat-model.md, "Anyone who can reach the port").
//!
//! - **Connection cap** ([`ServerLimits::max_connections`]): past it, a new
//!   connection is closed at once, so a flood cannot use up the daemon's file
//!   descriptors (which the store and the `command` task need too).
//! - **Header-read timeout** ([`ServerLimits::header_timeout`]): a client that
//!   trickles its request head is cut off (hyper's `header_read_timeout`).
//! - **Idle timeout** ([`ServerLimits::idle_timeout`]): a connection on which nothing
//!   was read or written for that long is closed ([`Idle`]). An event stream writes a
//!   keep-alive comment every 15 s, so it is never idle.
//!
//! Shutdown stops accepting, asks every connection to finish its request in flight,
//! and waits for them at most [`super::SHUTDOWN_GRACE`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The limits on the API's connections (`[api]` `max_connections`, `header_timeout`,
/// `idle_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's head.
    pub header_timeout: Duration,
    /// How long a connection may go without a byte read or written.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    /// 512 connections, 10 s for a request head, 60 s idle.
    fn default() -> ServerLimits {
        ServerLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused_logged = None::<Instant>;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, do not spin.
                    tracing::warn!(%error, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // At most one warning a minute: a flood must not flood the log too.
            if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "API connection limit reached; closing new connections"
                );
                refused_logged = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                // The rate limiter keys tokenless clients by their address.
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            });
        let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors are the client's: it hung up, timed out or sent garbage.
            if let Err(error) = watched.await {
                tracing::debug!(%error, %peer, "API connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(super::SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?super::SHUTDOWN_GRACE, "API connections still open after the shutdown grace period; closing anyway");
    }
    Ok(())
}

/// A stream that fails with `TimedOut` once nothing was read or written on it for
/// `timeout` while someone waited on it.
pub(crate) struct Idle<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Idle<T> {
        Idle {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn active(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending` while the deadline is ahead (the waker is registered with it).
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.active();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.expired(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
