//! Accepting connections for the router. Before a client is authenticated it can still
//! hold a connection, so what a connection may cost is bounded here: a request's header
//! must arrive within [`HEADER_READ_TIMEOUT`] (an idle keep-alive connection waits as
//! long for its next request), and at most [`MAX_CONNECTIONS`] are served at once; a
//! connection beyond that is closed as soon as it is accepted.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// How long a client has to send a whole request header.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are served at once, event streams included.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves `router` on `listener` until `stop` resolves, then stops accepting, asks every
/// connection to finish its request in flight, and returns once all have closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = pin!(stop);
    let mut full = false;
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin, and keep serving.
                    debug!("accepting an HTTP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if !full {
                warn!(
                    limit = MAX_CONNECTIONS,
                    "the HTTP API has as many connections as it serves at once; new ones are closed until some end"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!("serving an HTTP connection: {e}");
                    }
                    return;
                }
                _ = closed.changed() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                debug!("serving an HTTP connection: {e}");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}
