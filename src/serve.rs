//! The serving loop: accepts TCP connections and serves HTTP/1.1 and h2c on
//! them (hyper-util's auto builder, with upgrades for WebSockets), with what
//! `axum::serve` lacks for a gateway that faces the internet:
//!
//! - **Header-read timeout.** A new connection must deliver a complete request
//!   head (request line and headers) within `header_read_timeout` of the
//!   accept; on a keep-alive connection, within that long of the next
//!   request's first byte. Silent and slowloris clients are disconnected.
//! - **Keep-alive timeout.** A connection with no request in flight and
//!   nothing received for `keepalive_timeout` is closed gracefully (FIN after
//!   the last response; RFC 9112 §9.3 lets either side close an idle
//!   persistent connection).
//! - **A cap on open connections.** At the cap, a new connection makes the
//!   connection that has been idle longest close; connections that never
//!   completed a request go before ones that did, so a flood of idle or
//!   half-sent connections cannot push served clients out. When every
//!   connection has a request in flight, accepting pauses (new connections
//!   wait in the kernel's backlog) until one ends. Requests in flight
//!   (downloads, SSE, slow uploads, WebSocket tunnels) are never cut by this.
//! - **Write timeout.** A response the client takes no bytes of for
//!   `write_timeout` ends, and with it the response body and its upstream
//!   slot: on HTTP/2 that stream is reset (the connection's other streams go
//!   on), on HTTP/1.1 the connection is closed. "Takes no bytes" is seen from
//!   the response body: hyper polls it for the next frame only once the last
//!   one fits into its write buffer (HTTP/1.1) or the stream's flow-control
//!   window (HTTP/2), so a body that handed out a frame and has not been
//!   polled again is waiting for the client. Frames go out in pieces of at
//!   most [`MAX_CHUNK`] bytes, so a client that keeps reading, however slowly
//!   (at least `MAX_CHUNK` per `write_timeout`), keeps its response; time the
//!   body spends waiting for its upstream (an SSE stream between events) is
//!   never counted. WebSocket tunnels, past their 101, are not responses and
//!   are not subject to it.
//! - **One client connection, one share.** Every request carries its
//!   connection's [`ConnectionShare`] as an extension, so the proxy can hold
//!   all of a connection's HTTP/2 streams together to their share of the
//!   upstream slots. HTTP/2 connections may open at most
//!   `http2_max_streams` streams at once (RFC 9113 §5.1.2), and the
//!   listener does not offer RFC 8441's extended CONNECT: the gateway
//!   serves WebSockets over HTTP/1.1 only.
//! - **A clean drain.** From the stop signal on, HTTP/1.1 responses carry
//!   `Connection: close` (RFC 9112 §9.6) and HTTP/2 connections get GOAWAY
//!   (RFC 9113 §6.8), so clients move to other replicas on their own. When
//!   the listener closes, connections in the accept queue are still served,
//!   idle keep-alive connections are closed with a FIN, and requests in
//!   flight get until the drain deadline.
//!
//! Why hyper's own `http1::Builder::header_read_timeout` is not used: with the
//! auto builder it only starts once the protocol has been sniffed, so a
//! connection that sends nothing (or a few bytes of the HTTP/2 preface) is
//! never timed out; and hyper restarts that same timer when a keep-alive
//! connection goes idle, so the idle time between requests would be bounded
//! by the header timeout, with no keep-alive timeout of its own. Instead every
//! connection's state (requests in flight, when it went idle, when the next
//! request's first byte came) is kept in a registry per listener, and one
//! sweeper per listener closes connections whose time is up. The sweeper
//! ticks at a tenth of the shortest timeout (at most once a second), which is
//! the timers' precision; requests pay no timer of their own. The sweeper
//! also checks each response body's progress for the write timeout, and
//! resets an HTTP/2 stream by ending the task hyper spawned for it (see
//! [`StreamExec`]): dropping a stream's task makes h2 send `RST_STREAM`
//! (CANCEL).

use crate::proxy::bounds::ConnectionShare;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// File descriptors kept out of the connection cap for everything else the
/// process opens: the log file, config and key files, Redis, the listeners.
pub const FD_RESERVE: u64 = 64;

/// A connection told to close gracefully that still has not closed this long
/// after its last response is closed outright (an HTTP/2 peer that never
/// acknowledges the GOAWAY's PING, a pipelined half request).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The largest piece of a response body handed to hyper at once: the
/// granularity of the write timeout's "no bytes taken" (a larger frame
/// would let a slow but steady reader look stalled while it drains it).
pub const MAX_CHUNK: usize = 16 * 1024;

/// Where a listener is in its life; sent by whoever owns the shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Serving,
    /// Shutdown has begun: still accepting, but every HTTP/1.1 response
    /// carries `Connection: close` and HTTP/2 connections get GOAWAY.
    Draining,
    /// The listener closes; open connections finish their requests until
    /// `deadline`, then are closed.
    Closed {
        deadline: tokio::time::Instant,
    },
}

/// One listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// A response the client takes no bytes of for this long is ended.
    pub write_timeout: Duration,
    /// Streams open at once on one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Connections open at once on this listener (this serving thread's
    /// share of `server.max_connections`).
    pub max_connections: usize,
}

/// The connection caps in force: the configured ones, lowered to fit the
/// open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub main: usize,
    pub admin: usize,
}

/// The caps for an open-file soft limit of `nofile` (`None`: unlimited).
/// Every client connection may need an upstream connection too, so the main
/// listener gets half of what is left after [`FD_RESERVE`] and the admin
/// listener's share: with 1024 files, (1024 - 64 - 64) / 2 = 448.
pub fn connection_caps(max_connections: usize, admin_max: usize, nofile: Option<u64>) -> Caps {
    let Some(nofile) = nofile else {
        return Caps {
            main: max_connections.max(1),
            admin: admin_max.max(1),
        };
    };
    let budget = nofile.saturating_sub(FD_RESERVE);
    let admin = (admin_max as u64).min(budget / 4).max(1);
    let main = (max_connections as u64)
        .min(budget.saturating_sub(admin) / 2)
        .max(1);
    Caps {
        main: usize::try_from(main).unwrap_or(usize::MAX),
        admin: usize::try_from(admin).unwrap_or(usize::MAX),
    }
}

/// `cap` split over `threads` serving threads (the kernel spreads new
/// connections evenly over their sockets); every thread may hold at least one.
pub fn split_cap(cap: usize, threads: usize) -> Vec<usize> {
    let threads = threads.max(1);
    (0..threads)
        .map(|i| (cap / threads + usize::from(i < cap % threads)).max(1))
        .collect()
}

/// The open-file limit, after raising the soft limit to the hard one (what
/// servers such as nginx or systemd services commonly do: the default soft
/// limit of 1024 is far below what a busy gateway needs). Returns
/// `(soft, hard)`, `None` meaning unlimited.
#[cfg(unix)]
pub fn raise_nofile_limit() -> io::Result<(Option<u64>, Option<u64>)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur != lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = lim.rlim_cur,
                to = lim.rlim_max,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
            lim = raised;
        } else {
            let e = io::Error::last_os_error();
            tracing::warn!(error = %e, soft = lim.rlim_cur, hard = lim.rlim_max, "cannot raise the open-file limit");
        }
    }
    // rlim_t is u64 on Linux, not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    Ok((finite(lim.rlim_cur), finite(lim.rlim_max)))
}

#[cfg(not(unix))]
pub fn raise_nofile_limit() -> io::Result<(Option<u64>, Option<u64>)> {
    Ok((None, None))
}

/// Serves `service` on `listener` under `limits` until `stage` says
/// [`Stage::Closed`] and every connection is done (or the deadline passed).
///
/// `service` is anything `axum::serve` accepts: a `Router`, or a tower layer
/// around one. Each request carries `ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info`.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    stage: watch::Receiver<Stage>,
) -> io::Result<()>
where
    S: tower::Service<axum::extract::Request> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let shared = Arc::new(Shared::new(limits));
    let sweeper = tokio::spawn(sweep(Arc::downgrade(&shared)));
    let mut builder = auto::Builder::new(StreamExec);
    // The sweeper times request heads (see the module doc); hyper's timer
    // would also cut keep-alive connections at the header timeout.
    builder.http1().header_read_timeout(None);
    // No SETTINGS_ENABLE_CONNECT_PROTOCOL: the gateway serves no RFC 8441
    // WebSockets over HTTP/2 (its WebSocket rule judges HTTP/1.1 handshakes),
    // and CONNECT is refused unless a route names it.
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_streams);
    let mut server = Server {
        shared,
        service,
        builder: Arc::new(builder),
        victims: Vec::new(),
        errors: AcceptErrors::default(),
    };
    let result = server.run(listener, stage).await;
    sweeper.abort();
    result
}

/// What a listener shares with its connections and its sweeper.
struct Shared {
    limits: Limits,
    signals: Arc<Signals>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Connection tasks still running (upgraded connections excepted).
    tasks: AtomicUsize,
}

/// What a connection's requests need from the listener.
struct Signals {
    epoch: Instant,
    /// Shutdown has begun: HTTP/1.1 responses carry `Connection: close`.
    closing: AtomicBool,
    /// The accept loop waits for a connection to end or to go idle.
    waiting: AtomicBool,
    /// A connection ended, or went idle while `waiting`.
    changed: Notify,
}

impl Signals {
    fn now(&self) -> u64 {
        millis(self.epoch)
    }
}

/// Milliseconds since `epoch`, plus one: 0 means "never" in [`Conn`].
fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

fn as_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Shared {
    fn new(limits: Limits) -> Shared {
        Shared {
            limits,
            signals: Arc::new(Signals {
                epoch: Instant::now(),
                closing: AtomicBool::new(false),
                waiting: AtomicBool::new(false),
                changed: Notify::new(),
            }),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tasks: AtomicUsize::new(0),
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            header: as_millis(self.limits.header_read_timeout),
            keepalive: as_millis(self.limits.keepalive_timeout),
            write: as_millis(self.limits.write_timeout),
            grace: as_millis(CLOSE_GRACE),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self) -> usize {
        self.conns().len()
    }

    fn register(&self) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.signals.now();
        let conn = Arc::new(Conn {
            id,
            signals: self.signals.clone(),
            accepted: now,
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(0),
            closing_since: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            goaway: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            order: AtomicU8::new(Order::None as u8),
            kick: Notify::new(),
            bodies: Mutex::new(Vec::new()),
        });
        self.conns().insert(id, conn.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.conns().remove(&id);
        self.signals.changed.notify_one();
    }

    /// Every registered connection (a copy, so no lock is held while acting).
    fn all(&self) -> Vec<Arc<Conn>> {
        self.conns().values().cloned().collect()
    }
}

/// Timeouts in the milliseconds of [`millis`].
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: u64,
    keepalive: u64,
    write: u64,
    grace: u64,
}

/// What a connection task is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Order {
    None = 0,
    /// Close if no request is in flight: gracefully when nothing of a next
    /// request has arrived, outright when a request head is half there.
    IfIdle = 1,
    /// HTTP/2: send GOAWAY, finish the open streams, close.
    Goaway = 2,
    /// Close now.
    Hard = 3,
}

impl Order {
    fn from_u8(v: u8) -> Order {
        match v {
            1 => Order::IfIdle,
            2 => Order::Goaway,
            3 => Order::Hard,
            _ => Order::None,
        }
    }
}

/// One connection's state, written by its requests and its socket, read by
/// the sweeper and the accept loop. Times are [`millis`], 0 meaning never.
struct Conn {
    id: u64,
    signals: Arc<Signals>,
    accepted: u64,
    /// When the last response ended (or the accept).
    idle_since: AtomicU64,
    /// When the first byte after `idle_since` arrived: a request head is coming.
    head_started: AtomicU64,
    /// When the connection was told to close gracefully.
    closing_since: AtomicU64,
    in_flight: AtomicU32,
    requests: AtomicU64,
    h2: AtomicBool,
    goaway: AtomicBool,
    /// Its task has ended: closed, or upgraded (the tunnel holds the socket).
    detached: AtomicBool,
    order: AtomicU8,
    kick: Notify,
    /// Its response bodies still streaming, for the write timeout.
    bodies: Mutex<Vec<Weak<Progress>>>,
}

/// One response body's progress towards the client, for the write timeout.
struct Progress {
    signals: Arc<Signals>,
    /// When the body last handed hyper a frame that hyper has not come back
    /// for the next one: since then the client has taken too few bytes for
    /// that frame to go out. 0 while hyper waits on the body (or before its
    /// first frame).
    waiting_since: AtomicU64,
    /// The HTTP/2 stream's task, to end it (see [`StreamExec`]); `None` on
    /// HTTP/1.1, where the connection is closed instead.
    stream: Option<CancellationToken>,
}

impl Progress {
    fn handed(&self) {
        self.waiting_since
            .store(self.signals.now(), Ordering::Relaxed);
    }

    fn polled(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }
}

/// Whether a body waiting for its client since `waiting_since` (0: not
/// waiting) has run out of `write` time at `now`.
fn stalled(waiting_since: u64, now: u64, write: u64) -> bool {
    waiting_since != 0 && now >= waiting_since.saturating_add(write)
}

tokio::task_local! {
    /// The HTTP/2 stream whose task this is (see [`StreamExec`]).
    static STREAM: CancellationToken;
}

/// The executor hyper spawns each HTTP/2 stream's task on: tokio's, with a
/// token that ends the task. The stream's response future reads the token
/// from the task, so the sweeper can end that one stream (hyper and h2 then
/// reset it with CANCEL and drop its body) and no other.
#[derive(Debug, Clone, Copy)]
struct StreamExec;

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let token = CancellationToken::new();
        let ended = token.clone();
        tokio::spawn(STREAM.scope(token, async move {
            tokio::select! {
                biased;
                () = ended.cancelled() => {}
                () = fut => {}
            }
        }));
    }
}

/// A copy of a connection's state, for the pure decisions below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Snapshot {
    accepted: u64,
    idle_since: u64,
    head_started: u64,
    closing_since: u64,
    in_flight: u32,
    requests: u64,
    h2: bool,
    detached: bool,
    ordered: bool,
}

impl Conn {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            accepted: self.accepted,
            idle_since: self.idle_since.load(Ordering::Relaxed),
            head_started: self.head_started.load(Ordering::Relaxed),
            closing_since: self.closing_since.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            h2: self.h2.load(Ordering::Relaxed),
            detached: self.detached.load(Ordering::Relaxed),
            ordered: self.order.load(Ordering::Relaxed) != Order::None as u8,
        }
    }

    /// Tells the task; a stronger order is not weakened by a later one.
    fn order(&self, order: Order) {
        self.order.fetch_max(order as u8, Ordering::Relaxed);
        self.kick.notify_one();
    }

    fn take_order(&self) -> Order {
        Order::from_u8(self.order.swap(Order::None as u8, Ordering::Relaxed))
    }

    /// Bytes arrived: the first after going idle starts the header clock.
    fn received(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.signals.now(), Ordering::Relaxed);
        }
    }

    fn begin_request(self: &Arc<Self>, h2: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
            // An HTTP/2 connection opened while draining learns it here.
            if self.signals.closing.load(Ordering::Relaxed)
                && !self.goaway.swap(true, Ordering::Relaxed)
            {
                self.order(Order::Goaway);
            }
        }
        InFlight(self.clone())
    }

    /// A new response body's progress, watched by the sweeper.
    fn watch_body(&self) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            signals: self.signals.clone(),
            waiting_since: AtomicU64::new(0),
            stream: STREAM.try_with(CancellationToken::clone).ok(),
        });
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        bodies.retain(|b| b.strong_count() > 0);
        bodies.push(Arc::downgrade(&progress));
        progress
    }

    /// Ends the responses whose client has taken nothing for `write`.
    fn end_stalled(&self, now: u64, write: u64) {
        let bodies: Vec<_> = self
            .bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for body in bodies {
            if !stalled(body.waiting_since.load(Ordering::Relaxed), now, write) {
                continue;
            }
            match &body.stream {
                Some(stream) if !stream.is_cancelled() => {
                    tracing::info!(
                        write_timeout_ms = write,
                        "the client took no response bytes within the write timeout; resetting the stream"
                    );
                    stream.cancel();
                }
                Some(_) => {}
                None if self.order.load(Ordering::Relaxed) != Order::Hard as u8 => {
                    tracing::info!(
                        write_timeout_ms = write,
                        "the client took no response bytes within the write timeout; closing the connection"
                    );
                    self.order(Order::Hard);
                }
                None => {}
            }
        }
    }
}

/// When a connection's time is up, and what to do then; `None` while a
/// request is in flight (route timeouts govern those) or once its task ended.
fn deadline(s: &Snapshot, t: &Timeouts) -> Option<(u64, Order)> {
    if s.detached || s.in_flight > 0 {
        return None;
    }
    if s.closing_since != 0 {
        return Some((s.closing_since.max(s.idle_since) + t.grace, Order::Hard));
    }
    let at = if s.requests == 0 {
        // The first request head must be complete in time, bytes or not.
        s.accepted + t.header
    } else if !s.h2 && s.head_started != 0 {
        s.head_started + t.header
    } else {
        // HTTP/2 peers send frames (PING, SETTINGS) between requests: only
        // the time without a stream counts.
        s.idle_since + t.keepalive
    };
    Some((at, Order::IfIdle))
}

/// What a connection task does with an order, given its state when it
/// reads it (a request may have come in since the order was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ignore,
    /// hyper's graceful shutdown.
    Graceful,
    /// Drop the connection: a FIN, or a reset if unread bytes remain.
    Cut,
}

fn step(order: Order, s: &Snapshot) -> Step {
    match order {
        Order::None => Step::Ignore,
        Order::Hard => Step::Cut,
        Order::Goaway => Step::Graceful,
        Order::IfIdle if s.in_flight > 0 || s.closing_since != 0 => Step::Ignore,
        // Half a request head: hyper's graceful shutdown would wait for the
        // rest of it, which is what the client is not sending.
        Order::IfIdle if s.head_started != 0 && !s.h2 => Step::Cut,
        Order::IfIdle => Step::Graceful,
    }
}

/// How eligible a connection is for eviction at the cap (smaller goes
/// first), or `None` if it must not be evicted. Connections that never
/// completed a request go first, then the longest idle.
fn eviction_key(s: &Snapshot) -> Option<(bool, u64)> {
    let busy = s.detached || s.in_flight > 0 || s.closing_since != 0 || s.ordered;
    (!busy).then_some((s.requests > 0, s.idle_since))
}

/// Counts a request from its head until its response body is dropped (sent
/// in full, or abandoned with the connection).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        if conn.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            conn.idle_since.store(conn.signals.now(), Ordering::Relaxed);
            conn.head_started.store(0, Ordering::Relaxed);
            if conn.signals.waiting.load(Ordering::Relaxed) {
                conn.signals.changed.notify_one();
            }
        }
    }
}

struct Server<S> {
    shared: Arc<Shared>,
    service: S,
    builder: Arc<auto::Builder<StreamExec>>,
    /// The next eviction candidates, best last (see [`Server::evict_one`]).
    victims: Vec<((bool, u64), Weak<Conn>)>,
    errors: AcceptErrors,
}

impl<S> Server<S>
where
    S: tower::Service<axum::extract::Request> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    async fn run(
        &mut self,
        listener: TcpListener,
        mut stage: watch::Receiver<Stage>,
    ) -> io::Result<()> {
        let deadline = loop {
            tokio::select! {
                biased;
                next = next_stage(&mut stage) => match next {
                    Stage::Serving => {}
                    Stage::Draining => self.begin_drain(),
                    Stage::Closed { deadline } => break deadline,
                },
                accepted = self.accept(&listener) => {
                    if let Some((stream, remote)) = accepted {
                        self.spawn(stream, remote);
                    }
                }
            }
        };
        self.begin_drain();
        self.close_listener(listener);
        // Idle keep-alive connections close now (FIN, no reset); requests in
        // flight end with `Connection: close`; connections that have not sent
        // a request yet (the accept queue just drained) get their header time.
        for conn in self.shared.all() {
            if conn.requests.load(Ordering::Relaxed) > 0 {
                conn.order(Order::IfIdle);
            }
        }
        let shared = &self.shared;
        let done = async {
            while shared.tasks.load(Ordering::Relaxed) > 0 {
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    shared.signals.changed.notified(),
                )
                .await;
            }
        };
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            tracing::warn!(
                open = shared.tasks.load(Ordering::Relaxed),
                "requests still running at the shutdown deadline; closing their connections"
            );
            for conn in shared.all() {
                conn.order(Order::Hard);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while shared.tasks.load(Ordering::Relaxed) > 0 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        }
        Ok(())
    }

    /// The stop signal: responses say `Connection: close`, HTTP/2 gets GOAWAY.
    fn begin_drain(&mut self) {
        if self.shared.signals.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        for conn in self.shared.all() {
            if conn.h2.load(Ordering::Relaxed) && !conn.goaway.swap(true, Ordering::Relaxed) {
                conn.order(Order::Goaway);
            }
        }
    }

    /// Closes the listening socket without resetting anyone: new SYNs are
    /// dropped first (the client retries and then finds the port closed, so
    /// it sees a refused connection), then the connections the kernel has
    /// already completed are accepted and served, then the socket closes.
    /// Closing it with connections still queued would reset them.
    fn close_listener(&mut self, listener: TcpListener) {
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the listener back; closing it");
                return;
            }
        };
        refuse_new_connections(&listener);
        loop {
            match listener.accept() {
                Ok((stream, remote)) => {
                    let stream = stream
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(stream));
                    match stream {
                        Ok(stream) => self.spawn(stream, remote),
                        Err(e) => tracing::warn!(error = %e, "cannot serve a queued connection"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed while closing the listener");
                    break;
                }
            }
        }
    }

    /// The next connection, once there is room for it; `None` after an
    /// accept error (already handled).
    async fn accept(&mut self, listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
        self.make_room().await;
        match listener.accept().await {
            Ok(accepted) => {
                self.errors.ok();
                Some(accepted)
            }
            Err(e) if is_connection_error(&e) => None,
            Err(e) => {
                if is_out_of_files(&e) {
                    // Another connection's descriptor is the quickest way out.
                    self.evict_one();
                }
                let pause = self.errors.failed(&e);
                tokio::time::sleep(pause).await;
                None
            }
        }
    }

    /// Waits until a connection fits under the cap, evicting idle ones.
    async fn make_room(&mut self) {
        while self.shared.open() >= self.shared.limits.max_connections {
            if let Some(victim) = self.evict_one() {
                // An idle connection closes within a poll or two of its task;
                // one that lingers (an HTTP/2 peer) does not hold up the next.
                let until = tokio::time::Instant::now() + Duration::from_millis(50);
                while !victim.detached.load(Ordering::Relaxed) {
                    let changed = self.shared.signals.changed.notified();
                    if tokio::time::timeout_at(until, changed).await.is_err() {
                        break;
                    }
                }
            } else {
                // Every connection is busy: new ones wait in the backlog.
                let _waiting = Waiting::start(&self.shared.signals);
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.shared.signals.changed.notified(),
                )
                .await;
            }
        }
    }

    /// Tells the most evictable connection to close, and returns it; `None`
    /// if none may be. Candidates come from one scan, a batch at a time (a
    /// scan per new connection would cost O(cap) each at the cap); each is
    /// checked again before it is told, since it may have become busy since.
    fn evict_one(&mut self) -> Option<Arc<Conn>> {
        for refilled in [false, true] {
            if refilled {
                self.refill_victims();
            }
            while let Some((key, weak)) = self.victims.pop() {
                let Some(conn) = weak.upgrade() else { continue };
                if eviction_key(&conn.snapshot()) == Some(key) {
                    conn.order(Order::IfIdle);
                    return Some(conn);
                }
            }
        }
        None
    }

    fn refill_victims(&mut self) {
        let batch = (self.shared.limits.max_connections / 16).clamp(1, 1024);
        let mut all: Vec<_> = self
            .shared
            .conns()
            .values()
            .filter_map(|c| eviction_key(&c.snapshot()).map(|k| (k, Arc::downgrade(c))))
            .collect();
        if all.len() > batch {
            all.select_nth_unstable_by_key(batch, |(k, _)| *k);
            all.truncate(batch);
        }
        // Best candidate last, for `pop`.
        all.sort_unstable_by_key(|(key, _)| std::cmp::Reverse(*key));
        self.victims = all;
    }

    fn spawn(&mut self, stream: TcpStream, remote: SocketAddr) {
        let conn = self.shared.register();
        self.shared.tasks.fetch_add(1, Ordering::Relaxed);
        let io = TokioIo::new(TrackedIo {
            stream,
            conn: conn.clone(),
            shared: self.shared.clone(),
        });
        let service = ConnService {
            inner: self.service.clone(),
            conn: conn.clone(),
            remote,
            share: ConnectionShare::default(),
        };
        let builder = self.builder.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            {
                let served = builder.serve_connection_with_upgrades(io, service);
                tokio::pin!(served);
                loop {
                    tokio::select! {
                        // The connection first: bytes that came with the order
                        // are read (and their request counted) before it is obeyed.
                        biased;
                        result = served.as_mut() => {
                            if let Err(e) = result {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                            break;
                        }
                        _ = conn.kick.notified() => match step(conn.take_order(), &conn.snapshot()) {
                            Step::Ignore => {}
                            Step::Cut => break,
                            Step::Graceful => {
                                conn.closing_since.store(conn.signals.now(), Ordering::Relaxed);
                                // HTTP/1: closes at once if idle, else after the
                                // response in flight (with `Connection: close`);
                                // HTTP/2: GOAWAY, then closes once streams end.
                                served.as_mut().graceful_shutdown();
                            }
                        },
                    }
                }
                conn.detached.store(true, Ordering::Relaxed);
                // The connection and (unless it was upgraded) its socket go here.
            }
            shared.tasks.fetch_sub(1, Ordering::Relaxed);
            shared.signals.changed.notify_one();
        });
    }
}

/// Sets `waiting` while the accept loop waits for a busy connection to end.
struct Waiting<'a>(&'a Signals);

impl<'a> Waiting<'a> {
    fn start(signals: &'a Signals) -> Waiting<'a> {
        signals.waiting.store(true, Ordering::Relaxed);
        Waiting(signals)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(false, Ordering::Relaxed);
    }
}

/// The next stage; never resolves once the sender is gone (serve on).
async fn next_stage(stage: &mut watch::Receiver<Stage>) -> Stage {
    match stage.changed().await {
        Ok(()) => *stage.borrow_and_update(),
        Err(_) => std::future::pending().await,
    }
}

/// Closes connections whose time is up, a tick at a time.
async fn sweep(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => sweep_period(&s.limits),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.signals.now();
        let timeouts = shared.timeouts();
        for conn in shared.conns().values() {
            if let Some((at, order)) = deadline(&conn.snapshot(), &timeouts) {
                if now >= at {
                    conn.order(order);
                }
            }
            conn.end_stalled(now, timeouts.write);
        }
    }
}

/// A tenth of the shortest timeout, between 10 ms and 1 s.
fn sweep_period(limits: &Limits) -> Duration {
    let shortest = limits
        .header_read_timeout
        .min(limits.keepalive_timeout)
        .min(limits.write_timeout);
    (shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Drops new SYNs on a listening socket (a classic BPF filter that keeps
/// nothing), so that nobody completes a handshake between the last accept
/// and the close. Best effort: without it, those few would be reset.
fn refuse_new_connections(listener: &std::net::TcpListener) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // BPF_RET | BPF_K, k = 0: accept 0 bytes of the packet, i.e. drop it.
        const DROP_ALL: socket2::SockFilter = socket2::SockFilter::new(0x06, 0, 0, 0);
        if let Err(e) = socket2::SockRef::from(listener).attach_filter(&[DROP_ALL]) {
            tracing::debug!(error = %e, "cannot filter SYNs on the closing listener");
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = listener;
}

/// Errors of one connection, not of the listener: the next accept may succeed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(unix)]
fn is_out_of_files(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
fn is_out_of_files(_: &io::Error) -> bool {
    false
}

/// accept() failures (out of file descriptors, out of memory): the pending
/// connection stays queued, so retrying at once would spin. Pauses grow from
/// 10 ms to 1 s; one warning per 10 s says how many there were.
#[derive(Default)]
struct AcceptErrors {
    pause: Option<Duration>,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl AcceptErrors {
    fn ok(&mut self) {
        self.pause = None;
    }

    fn failed(&mut self, e: &io::Error) -> Duration {
        let pause = self.pause.map_or(Duration::from_millis(10), |p| {
            (p * 2).min(Duration::from_secs(1))
        });
        self.pause = Some(pause);
        self.unreported += 1;
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, failures = self.unreported, pause_ms = pause.as_millis() as u64, "accept failed; pausing before the next");
            self.last_warning = Some(Instant::now());
            self.unreported = 0;
        }
        pause
    }
}

/// The socket, noting when bytes arrive; leaves the registry when dropped
/// (also when an upgraded connection's tunnel ends).
struct TrackedIo {
    stream: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        self.shared.remove(self.conn.id);
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.received();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The per-connection service hyper calls: adds `ConnectInfo` and the
/// connection's [`ConnectionShare`], counts the request in flight, and says
/// `Connection: close` once shutdown has begun.
struct ConnService<S> {
    inner: S,
    conn: Arc<Conn>,
    remote: SocketAddr,
    share: ConnectionShare,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for ConnService<S>
where
    S: tower::Service<axum::extract::Request> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S>;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let h1 = req.version() < http::Version::HTTP_2;
        let guard = self.conn.begin_request(!h1);
        req.extensions_mut().insert(ConnectInfo(self.remote));
        req.extensions_mut().insert(self.share.clone());
        let req = req.map(axum::body::Body::new);
        ResponseFuture {
            inner: tower::ServiceExt::oneshot(self.inner.clone(), req),
            guard: Some(guard),
            h1,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, with the in-flight guard moved into its body.
    struct ResponseFuture<S>
    where
        S: tower::Service<axum::extract::Request>,
    {
        #[pin]
        inner: tower::util::Oneshot<S, axum::extract::Request>,
        guard: Option<InFlight>,
        h1: bool,
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: tower::Service<axum::extract::Request>,
    S::Response: IntoResponse,
{
    type Output = Result<http::Response<TrackedBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        let mut resp = resp.into_response();
        let guard = this.guard.take();
        let closing = guard
            .as_ref()
            .is_some_and(|g| g.0.signals.closing.load(Ordering::Relaxed));
        // From the stop signal on, each HTTP/1.1 response is the connection's
        // last (RFC 9112 §9.6): the client opens its next connection to a
        // replica that is staying, and never reuses one this side will close.
        // Not on 101: the connection becomes the upgraded protocol's.
        if closing && *this.h1 && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            close_connection(resp.headers_mut());
        }
        // Read here, in the stream's task (HTTP/2), for its token.
        let progress = guard.as_ref().map(|g| g.0.watch_body());
        Poll::Ready(Ok(resp.map(|inner| TrackedBody {
            inner,
            rest: Bytes::new(),
            progress,
            _guard: guard,
        })))
    }
}

fn close_connection(headers: &mut http::HeaderMap) {
    use http::header::{Entry, CONNECTION};
    let close = http::HeaderValue::from_static("close");
    match headers.entry(CONNECTION) {
        Entry::Occupied(mut e) => {
            if !e
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
            {
                e.append(close);
            }
        }
        Entry::Vacant(e) => {
            e.insert(close);
        }
    }
}

/// A response body that keeps its request counted in flight until hyper
/// drops it (after the last byte, or with the connection or the stream),
/// hands its data out in pieces of at most [`MAX_CHUNK`] and tells the
/// write timeout whether it waits for the client.
struct TrackedBody {
    inner: axum::body::Body,
    /// What is left of a frame larger than [`MAX_CHUNK`].
    rest: Bytes,
    progress: Option<Arc<Progress>>,
    _guard: Option<InFlight>,
}

impl TrackedBody {
    fn handed(&self) {
        if let Some(p) = &self.progress {
            p.handed();
        }
    }
}

/// The next piece of `data` to hand out, leaving the rest in `data`.
fn next_piece(data: &mut Bytes) -> Bytes {
    data.split_to(data.len().min(MAX_CHUNK))
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        // hyper came back for more: the last piece went out.
        if let Some(p) = &this.progress {
            p.polled();
        }
        if !this.rest.is_empty() {
            let piece = next_piece(&mut this.rest);
            this.handed();
            return Poll::Ready(Some(Ok(http_body::Frame::data(piece))));
        }
        let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let piece = next_piece(&mut data);
                this.rest = data;
                http_body::Frame::data(piece)
            }
            Err(trailers) => trailers,
        };
        this.handed();
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_open_file_limit() {
        // 1024 files: 64 reserved, the admin cap, half of the rest.
        assert_eq!(
            connection_caps(10_000, 64, Some(1024)),
            Caps {
                main: 448,
                admin: 64
            }
        );
        // A configured cap below the share is kept.
        assert_eq!(connection_caps(100, 8, Some(1024)).main, 100);
        // A large limit leaves the configured caps alone.
        assert_eq!(
            connection_caps(10_000, 64, Some(1_048_576)),
            Caps {
                main: 10_000,
                admin: 64
            }
        );
        // Unlimited: as configured.
        assert_eq!(
            connection_caps(10_000, 64, None),
            Caps {
                main: 10_000,
                admin: 64
            }
        );
        // A tiny limit: the admin listener gets at most a quarter, and
        // neither cap falls to 0 (a listener that may hold nothing would
        // never accept).
        assert_eq!(
            connection_caps(10_000, 64, Some(128)),
            Caps {
                main: 24,
                admin: 16
            }
        );
        assert_eq!(
            connection_caps(10_000, 64, Some(10)),
            Caps { main: 1, admin: 1 }
        );
    }

    #[test]
    fn the_cap_is_split_over_threads() {
        assert_eq!(split_cap(448, 1), vec![448]);
        assert_eq!(split_cap(448, 2), vec![224, 224]);
        assert_eq!(split_cap(10, 3), vec![4, 3, 3]);
        assert_eq!(split_cap(10, 3).iter().sum::<usize>(), 10);
        // Fewer connections than threads: each thread may still hold one.
        assert_eq!(split_cap(2, 4), vec![1, 1, 1, 1]);
        assert_eq!(split_cap(5, 0), vec![5]);
    }

    const T: Timeouts = Timeouts {
        header: 1_000,
        keepalive: 5_000,
        write: 3_000,
        grace: 2_000,
    };

    fn fresh(at: u64) -> Snapshot {
        Snapshot {
            accepted: at,
            idle_since: at,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_from_the_accept() {
        let s = fresh(100);
        assert_eq!(deadline(&s, &T), Some((1_100, Order::IfIdle)));
        // Bytes of the first request do not extend it.
        let partial = Snapshot {
            head_started: 900,
            ..s
        };
        assert_eq!(deadline(&partial, &T), Some((1_100, Order::IfIdle)));
        // Once the head is in, the request is in flight: no deadline.
        let busy = Snapshot {
            in_flight: 1,
            requests: 1,
            ..s
        };
        assert_eq!(deadline(&busy, &T), None);
    }

    #[test]
    fn between_requests_the_keepalive_timeout_counts_until_a_byte_comes() {
        let idle = Snapshot {
            requests: 3,
            idle_since: 10_000,
            ..fresh(100)
        };
        assert_eq!(deadline(&idle, &T), Some((15_000, Order::IfIdle)));
        // The next request's first byte starts the header clock ...
        let started = Snapshot {
            head_started: 12_000,
            ..idle
        };
        assert_eq!(deadline(&started, &T), Some((13_000, Order::IfIdle)));
        // ... even late in the idle period (it may end after it).
        let late = Snapshot {
            head_started: 14_900,
            ..idle
        };
        assert_eq!(deadline(&late, &T), Some((15_900, Order::IfIdle)));
        // HTTP/2 frames between requests are not a request head.
        let h2 = Snapshot {
            h2: true,
            ..started
        };
        assert_eq!(deadline(&h2, &T), Some((15_000, Order::IfIdle)));
    }

    #[test]
    fn a_closing_connection_gets_a_grace_then_is_cut() {
        let closing = Snapshot {
            requests: 1,
            idle_since: 5_000,
            closing_since: 4_000,
            ..fresh(100)
        };
        // The grace counts from the later of the order and the last response.
        assert_eq!(deadline(&closing, &T), Some((7_000, Order::Hard)));
        let in_flight = Snapshot {
            in_flight: 2,
            ..closing
        };
        assert_eq!(deadline(&in_flight, &T), None);
        let detached = Snapshot {
            detached: true,
            ..closing
        };
        assert_eq!(deadline(&detached, &T), None);
    }

    #[test]
    fn eviction_takes_never_served_connections_first_then_the_longest_idle() {
        let never_served_new = fresh(5_000);
        let never_served_old = fresh(1_000);
        let served_old = Snapshot {
            requests: 1,
            idle_since: 500,
            ..fresh(100)
        };
        let served_new = Snapshot {
            idle_since: 4_000,
            ..served_old
        };
        let mut order = [served_new, never_served_new, served_old, never_served_old]
            .map(|s| eviction_key(&s).unwrap());
        order.sort();
        assert_eq!(
            order,
            [
                eviction_key(&never_served_old).unwrap(),
                eviction_key(&never_served_new).unwrap(),
                eviction_key(&served_old).unwrap(),
                eviction_key(&served_new).unwrap(),
            ]
        );
        // Never: requests in flight, tunnels, connections already closing or told to.
        for busy in [
            Snapshot {
                in_flight: 1,
                ..served_old
            },
            Snapshot {
                detached: true,
                ..served_old
            },
            Snapshot {
                closing_since: 600,
                ..served_old
            },
            Snapshot {
                ordered: true,
                ..served_old
            },
        ] {
            assert_eq!(eviction_key(&busy), None, "{busy:?}");
        }
    }

    #[test]
    fn orders_are_obeyed_as_the_connection_is_now() {
        let idle = Snapshot {
            requests: 1,
            ..fresh(100)
        };
        assert_eq!(step(Order::IfIdle, &idle), Step::Graceful);
        assert_eq!(step(Order::IfIdle, &fresh(100)), Step::Graceful);
        // A request came in since: it is not cut.
        let busy = Snapshot {
            in_flight: 1,
            ..idle
        };
        assert_eq!(step(Order::IfIdle, &busy), Step::Ignore);
        // Already closing gracefully: nothing more to do until the grace ends.
        let closing = Snapshot {
            closing_since: 50,
            ..idle
        };
        assert_eq!(step(Order::IfIdle, &closing), Step::Ignore);
        assert_eq!(step(Order::Hard, &closing), Step::Cut);
        // Half a request head, on a new or a keep-alive connection.
        for s in [idle, fresh(100)] {
            let half = Snapshot {
                head_started: 120,
                ..s
            };
            assert_eq!(step(Order::IfIdle, &half), Step::Cut, "{half:?}");
        }
        // HTTP/2 bytes between streams are frames, not half a request.
        let h2 = Snapshot {
            h2: true,
            head_started: 120,
            ..idle
        };
        assert_eq!(step(Order::IfIdle, &h2), Step::Graceful);
        assert_eq!(step(Order::Goaway, &busy), Step::Graceful);
        assert_eq!(step(Order::None, &idle), Step::Ignore);
    }

    #[test]
    fn the_sweeper_ticks_at_a_tenth_of_the_shortest_timeout() {
        let limits = |h, k| Limits {
            header_read_timeout: Duration::from_millis(h),
            keepalive_timeout: Duration::from_millis(k),
            write_timeout: Duration::from_secs(30),
            http2_max_streams: 100,
            max_connections: 1,
        };
        assert_eq!(
            sweep_period(&limits(10_000, 60_000)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_period(&limits(1_000, 60_000)),
            Duration::from_millis(100)
        );
        assert_eq!(sweep_period(&limits(60_000, 50)), Duration::from_millis(10));
        assert_eq!(
            sweep_period(&limits(3_600_000, 3_600_000)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_sweeper_ticks_for_the_write_timeout_too() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_millis(500),
            http2_max_streams: 100,
            max_connections: 1,
        };
        assert_eq!(sweep_period(&limits), Duration::from_millis(50));
    }

    #[test]
    fn a_body_is_stalled_only_while_it_waits_for_its_client_past_the_timeout() {
        for (waiting_since, now, stalled_now) in [
            // hyper waits on the body (upstream silent, SSE between events).
            (0, 1_000_000, false),
            (1_000, 3_999, false),
            (1_000, 4_000, true),
            (1_000, 9_000, true),
            // Just handed a piece.
            (9_000, 9_000, false),
        ] {
            assert_eq!(
                stalled(waiting_since, now, T.write),
                stalled_now,
                "{waiting_since} {now}"
            );
        }
    }

    #[tokio::test]
    async fn large_frames_go_out_in_pieces_and_waiting_is_tracked() {
        use http_body_util::BodyExt;
        let signals = Shared::new(Limits {
            header_read_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            http2_max_streams: 1,
            max_connections: 1,
        })
        .signals;
        let progress = Arc::new(Progress {
            signals,
            waiting_since: AtomicU64::new(0),
            stream: None,
        });
        let data = Bytes::from(vec![7u8; 2 * MAX_CHUNK + 5]);
        let mut body = TrackedBody {
            inner: axum::body::Body::from(data.clone()),
            rest: Bytes::new(),
            progress: Some(progress.clone()),
            _guard: None,
        };
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(data.len() as u64)
        );
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let piece = frame.unwrap().into_data().unwrap();
            // Handed out, not yet polled again: waiting for the client.
            assert_ne!(progress.waiting_since.load(Ordering::Relaxed), 0);
            sizes.push(piece.len());
            all.extend_from_slice(&piece);
            let left = http_body::Body::size_hint(&body).exact();
            assert_eq!(left, Some((data.len() - all.len()) as u64));
        }
        assert_eq!(sizes, [MAX_CHUNK, MAX_CHUNK, 5]);
        assert_eq!(all, data);
        // The final poll found the end: no longer waiting.
        assert_eq!(progress.waiting_since.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn connection_close_is_added_once() {
        let mut h = http::HeaderMap::new();
        close_connection(&mut h);
        close_connection(&mut h);
        assert_eq!(h.get_all(http::header::CONNECTION).iter().count(), 1);
        assert_eq!(h[http::header::CONNECTION], "close");
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CONNECTION, "Close".parse().unwrap());
        close_connection(&mut h);
        assert_eq!(h.get_all(http::header::CONNECTION).iter().count(), 1);
    }

    /// The closing listener drops SYNs: a client cannot complete a handshake
    /// (and be reset at the close), and finds the port refused afterwards.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_closing_listener_completes_no_new_handshake() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // Before: a handshake completes.
        let before = tokio::net::TcpStream::connect(addr).await.unwrap();
        refuse_new_connections(&listener);
        let during = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        assert!(during.is_err(), "a handshake completed: {during:?}");
        // What was queued before is still there to be accepted.
        let (queued, _) = listener.accept().unwrap();
        assert_eq!(queued.peer_addr().unwrap(), before.local_addr().unwrap());
        drop(listener);
        let after = tokio::net::TcpStream::connect(addr).await;
        assert_eq!(after.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }
}
