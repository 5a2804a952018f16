//! What bounds a proxied request while it is in flight, besides the route's
//! timeout (which ends at the response head):
//!
//! - **Upstream slots.** Every upstream request holds one slot of a global
//!   pool (sized like the main listener's connection cap) from the moment it
//!   is sent until its response body ends or is dropped; a WebSocket tunnel
//!   holds its slot for its whole life. One client connection (all of its
//!   HTTP/2 streams together) may hold at most `per_connection` of them, so a
//!   single client cannot starve every other one; past its share, and when
//!   the pool is empty, the answer is 503 `upstream_busy`.
//! - **Request-body idle timeout.** A request body that delivers no bytes
//!   for `server.body_timeout` while the upstream waits for it ends the
//!   upstream request, and the client gets 408. A slow upload that keeps
//!   sending is never cut.
//!
//! The response side (a client that stops reading) is bounded by the serving
//! loop's write timeout (`crate::serve`), which drops the response body and
//! so gives its slot back.

use crate::error::AppError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The upstream slots of one gateway: the global pool and each client
/// connection's share of it.
#[derive(Debug, Clone)]
pub struct UpstreamSlots {
    pool: Arc<Semaphore>,
    total: usize,
    per_connection: usize,
}

impl UpstreamSlots {
    /// `total` slots; each connection may hold `configured` of them, or a
    /// quarter of `total` when that is not set (see [`share`]).
    pub fn new(total: usize, configured: Option<usize>) -> UpstreamSlots {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        UpstreamSlots {
            pool: Arc::new(Semaphore::new(total)),
            total,
            per_connection: share(total, configured),
        }
    }

    /// Slots free right now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.pool.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn per_connection(&self) -> usize {
        self.per_connection
    }

    /// A slot for one upstream request from the client connection `conn`
    /// (`None`: a request that came from no client connection, as in
    /// in-process tests). Refused when the connection holds its share or the
    /// pool is empty.
    pub fn take(&self, conn: Option<&ConnectionShare>) -> Result<Slot, AppError> {
        let share = match conn {
            Some(c) => Some(c.take(self.per_connection).ok_or_else(|| {
                tracing::warn!(
                    share = self.per_connection,
                    "a client connection holds its whole share of the upstream slots"
                );
                AppError::UpstreamBusy
            })?),
            None => None,
        };
        let permit = self.pool.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("every upstream slot is in use");
            AppError::UpstreamBusy
        })?;
        Ok(Slot {
            _permit: permit,
            _share: share,
        })
    }
}

/// A client connection's share of the upstream slots each of its streams
/// needs: the serving loop puts one per connection into every request's
/// extensions, and the proxy counts against it. The count is the
/// connection's alone, so the connection is its identity.
#[derive(Debug, Clone, Default)]
pub struct ConnectionShare(Arc<AtomicUsize>);

impl ConnectionShare {
    /// Slots this connection's requests hold now.
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn take(&self, max: usize) -> Option<Held> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                admits(held, max).then_some(held + 1)
            })
            .ok()
            .map(|_| Held(self.0.clone()))
    }
}

/// One slot of a connection's share, given back when dropped.
#[derive(Debug)]
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One upstream request's slot: held until the response body (or the
/// WebSocket tunnel) ends or is dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _share: Option<Held>,
}

/// Whether a connection that holds `held` slots may take one more.
fn admits(held: usize, max: usize) -> bool {
    held < max
}

/// A connection's share of `total` slots: as configured (never more than
/// the pool), else a quarter of it; at least one either way.
pub fn share(total: usize, configured: Option<usize>) -> usize {
    configured.unwrap_or(total / 4).clamp(1, total.max(1))
}

/// The request body stopped arriving: no bytes for `server.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes arrived for {0:?}")]
pub struct BodyIdle(pub Duration);

/// A request body that fails with [`BodyIdle`] once it has delivered nothing
/// for `timeout` while being polled. The clock runs only while the reader
/// waits for the client (a `Pending` poll); the time the upstream takes to
/// read is not counted, and every frame starts it afresh.
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    let deadline = tokio::time::Instant::now() + this.timeout;
                    this.timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(this.timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_a_quarter_of_the_slots_unless_configured() {
        for (total, configured, want) in [
            (448, None, 112),
            (40, None, 10),
            (4, None, 1),
            // Fewer than four slots: still one each.
            (3, None, 1),
            (1, None, 1),
            (448, Some(10), 10),
            // More than the pool means the whole pool, never more.
            (8, Some(100), 8),
            // 0 is refused by the config check; here it still means one.
            (8, Some(0), 1),
        ] {
            assert_eq!(share(total, configured), want, "{total} {configured:?}");
        }
    }

    #[test]
    fn a_connection_takes_slots_up_to_its_share() {
        for (held, max, ok) in [(0, 1, true), (1, 1, false), (2, 3, true), (3, 3, false)] {
            assert_eq!(admits(held, max), ok, "{held} of {max}");
        }
    }

    #[tokio::test]
    async fn slots_come_back_when_dropped_and_shares_are_per_connection() {
        let slots = UpstreamSlots::new(4, Some(2));
        let (a, b) = (ConnectionShare::default(), ConnectionShare::default());
        let a1 = slots.take(Some(&a)).unwrap();
        let _a2 = slots.take(Some(&a)).unwrap();
        assert!(matches!(slots.take(Some(&a)), Err(AppError::UpstreamBusy)));
        // The refusal took nothing from the pool.
        assert_eq!((slots.available(), a.held()), (2, 2));
        let _b1 = slots.take(Some(&b)).unwrap();
        let _none = slots.take(None).unwrap();
        // The pool is empty: even a connection under its share waits.
        assert!(matches!(slots.take(Some(&b)), Err(AppError::UpstreamBusy)));
        assert_eq!(b.held(), 1, "a refusal by the pool gives the share back");
        drop(a1);
        assert_eq!((slots.available(), a.held()), (1, 1));
        assert!(slots.take(Some(&a)).is_ok());
    }
}
