//! oidc-bff: an OAuth2/OpenID Connect backend-for-frontend gateway.
//!
//! The crate map:
//! - [`config`]. The typed configuration, loaded and validated once.
//! - [`app`]. The state every request shares.
//! - [`clock`]. The time every expiry is judged by; tests move it.
//! - [`router`]. The one place routes and layers are assembled.
//! - [`serve`]. The serving loop: connection limits, slow clients, drain.
//! - [`error`]. The one error type and its HTML/JSON rendering.
//! - [`oidc`]. The identity provider: metadata, login flow, tokens, JWKS, JWTs, logout.
//! - [`session`]. Sealed server-side sessions, the key ring, the stores.
//! - [`auth`]. The `/auth/*` handlers, the session extractor, CSRF.
//! - [`proxy`]. The route table, header hygiene and forwarding to upstreams.
//! - [`request_path`]. The one canonical request path every check and the upstream use.
//! - [`claims`]. One rule each for the groups claim and for token or client text in logs.
//! - [`policy`]. Per-route authorization (groups, scopes, claims) as pure decisions.
//! - [`telemetry`]. Logs.
//! - `demo`. `oidc-bff demo` and the development IdP (local work only; built
//!   only with the `dev` feature, which is on by default and off in the image).
//!

pub mod admin;
pub mod app;
pub mod auth;
pub mod claims;
pub mod clock;
pub mod config;
#[cfg(feature = "dev")]
pub mod demo;
pub mod error;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod request_path;
pub mod router;
pub mod serve;
pub mod session;
pub mod telemetry;

use app::AppState;
use serve::Stage;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// reqwest and hyper-rustls both use rustls; one process-wide crypto provider
/// must be chosen before the first TLS connection.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running gateway: where it listens, and the state it serves from.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `count` listening sockets on `addr` for [`serve_workers`]: with more
/// than one, each gets `SO_REUSEPORT` and the kernel spreads new connections
/// over them. A port another process listens on is refused (`SO_REUSEPORT`
/// alone would let a stale gateway of the same user share it silently), and
/// port 0 is resolved once, so every socket listens on the same port.
pub fn bind_workers(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let count = count.max(1);
    let bind = |addr: SocketAddr, reuse_port: bool| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    let mut addr = addr;
    if count > 1 && addr.port() != 0 {
        // Fails with "address in use" while anyone listens there.
        drop(bind(addr, false)?);
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = bind(addr, count > 1)?;
        socket.set_nonblocking(true)?;
        socket.listen(1024)?;
        if let Some(bound) = socket.local_addr()?.as_socket() {
            addr = bound;
        }
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// The listening sockets handed over by whoever started the process, as
/// systemd socket activation does: `LISTEN_PID` is this process and
/// `LISTEN_FDS` counts the descriptors from 3 on. All but the last are the
/// serving sockets, one serving thread each (`workers` then does not apply);
/// the last is the admin listener. Each must be a listening TCP socket on
/// `listen` and `admin_listen` respectively (port 0 there accepts any port).
///
/// `None` when nothing was handed to this process. The point is a port held
/// from before the process starts: a parent that must know the URL first
/// (a test harness, a supervisor) never releases it for a race.
pub fn inherited_listeners(
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> std::io::Result<Option<(Vec<std::net::TcpListener>, std::net::TcpListener)>> {
    let Some(count) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    // Meant for another process (the variables were inherited by accident).
    if std::env::var("LISTEN_PID").ok() != Some(std::process::id().to_string()) {
        return Ok(None);
    }
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    let count: i32 = count
        .to_str()
        .and_then(|c| c.parse().ok())
        .filter(|c| (2..=1024).contains(c))
        .ok_or_else(|| {
            invalid(format!(
                "LISTEN_FDS={count:?}: expected the serving sockets and then the admin socket (2 or more)"
            ))
        })?;
    let mut sockets = (3..3 + count)
        .map(adopt_listener)
        .collect::<std::io::Result<Vec<_>>>()?;
    let admin = sockets.pop().expect("at least two sockets");
    for (socket, want, what) in sockets
        .iter()
        .map(|s| (s, listen, "server.listen"))
        .chain([(&admin, admin_listen, "server.admin_listen")])
    {
        let bound = socket.local_addr()?;
        if bound.ip() != want.ip() || (want.port() != 0 && bound.port() != want.port()) {
            return Err(invalid(format!(
                "an inherited socket listens on {bound}, but {what} is {want}"
            )));
        }
    }
    Ok(Some((sockets, admin)))
}

/// Takes descriptor `fd` as a listening TCP socket, closed on exec.
fn adopt_listener(fd: i32) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // Only an open descriptor may be owned (and later closed) by us.
    // SAFETY: F_GETFD reads the descriptor's flags and changes nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::other(format!(
            "inherited descriptor {fd}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the descriptor is open, and LISTEN_FDS hands it to this process alone.
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    let listening = socket.r#type().ok() == Some(socket2::Type::STREAM)
        && socket.is_listener().unwrap_or(false)
        && socket.local_addr().is_ok_and(|a| a.as_socket().is_some());
    if !listening {
        // Not ours to close or change: it is not what the variables said.
        let _ = socket.into_raw_fd();
        return Err(std::io::Error::other(format!(
            "inherited descriptor {fd} is not a listening TCP socket"
        )));
    }
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves the gateway and the admin listener on the given sockets until
/// `shutdown` resolves, then drains in-flight requests. One serving thread:
/// the calling runtime's (tests, `demo`).
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    serve_workers(state, vec![listener.into_std()?], admin_listener, shutdown).await
}

/// Serves the gateway on `listeners` and the admin listener until `shutdown`
/// resolves, then drains in-flight requests.
///
/// The first listener is served on the calling runtime, each further one by
/// a thread of its own running a current-thread runtime. A connection, its
/// requests and their upstream connections stay on one thread, as with nginx
/// or Envoy workers: no request is handed between threads (on the
/// work-stealing runtime that hand-off cost a quarter of a proxied request).
pub async fn serve_workers(
    state: Arc<AppState>,
    listeners: Vec<std::net::TcpListener>,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let mut listeners = listeners.into_iter();
    let first = listeners
        .next()
        .ok_or_else(|| std::io::Error::other("no listener to serve on"))?;
    first.set_nonblocking(true)?;
    let first = TcpListener::from_std(first)?;
    let addr = first.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    // Warm the provider so the first sign-in does not wait; failures retry on use.
    let warm = state.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.provider.warm().await {
            tracing::warn!(error = %crate::claims::log_text(&e), "identity provider not reachable yet; will retry on demand");
        }
    });
    // Histogram samples are buffered until drained; drain them regularly, not
    // only at scrape time, or they pile up (about 50 bytes per request).
    let metrics = Arc::downgrade(&state.metrics);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            match metrics.upgrade() {
                Some(m) => m.upkeep(),
                None => break,
            }
        }
    });
    let app = router::build(state.clone());
    let admin = router::admin(state.clone());
    let limits = connection_limits(&state.config.server, 1 + listeners.len());
    // Shutdown in order: readiness fails at once and HTTP/1.1 responses say
    // `Connection: close` (HTTP/2 gets GOAWAY); after `shutdown_delay` (time
    // for load balancers to stop sending) the listeners close; in-flight
    // requests, downloads and WebSocket tunnels get `shutdown_timeout` to
    // finish; the admin listener goes last.
    let (stage_tx, stage_rx) = tokio::sync::watch::channel(Stage::Serving);
    let signal_state = state.clone();
    let delay = state.config.server.shutdown_delay;
    let drain = state.config.server.shutdown_timeout;
    tokio::spawn(async move {
        shutdown.await;
        signal_state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(delay = ?delay, "shutting down: not ready any more; closing the listener after the delay");
        let _ = stage_tx.send(Stage::Draining);
        tokio::time::sleep(delay).await;
        let _ = stage_tx.send(Stage::Closed {
            deadline: tokio::time::Instant::now() + drain,
        });
    });
    let (admin_tx, admin_rx) = tokio::sync::watch::channel(Stage::Serving);
    let admin_task = tokio::spawn(serve::serve(admin_listener, admin, limits.admin, admin_rx));
    let mut workers = Vec::new();
    for (index, listener) in listeners.enumerate().map(|(i, l)| (i + 1, l)) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (app, stop, tunnels) = (app.clone(), stage_rx.clone(), state.tunnels.clone());
        let limits = limits.main[index];
        std::thread::Builder::new()
            .name(format!("oidc-bff-{index}"))
            .spawn(move || {
                proxy::set_worker(index);
                let served = runtime.block_on(async move {
                    listener.set_nonblocking(true)?;
                    let listener = TcpListener::from_std(listener)?;
                    serve_listener(listener, app, limits, stop, tunnels).await
                });
                let _ = done_tx.send(served);
            })?;
        workers.push(done_rx);
    }
    let tunnels = state.tunnels.clone();
    let first_limits = limits.main[0];
    let task = tokio::spawn(async move {
        let mut result = serve_listener(first, app, first_limits, stage_rx, tunnels).await;
        for worker in workers {
            let served = worker
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
            result = result.and(served);
        }
        // Probes and scrapes in flight get a moment; idle ones close at once.
        let _ = admin_tx.send(Stage::Closed {
            deadline: tokio::time::Instant::now() + ADMIN_DRAIN,
        });
        let admin = admin_task
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the admin listener panicked")));
        result.and(admin)
    });
    tracing::info!(%addr, %admin_addr, "oidc-bff listening");
    Ok(Running {
        addr,
        admin_addr,
        state,
        task,
    })
}

/// How long requests on the admin listener may take to finish once the
/// gateway's listeners are done.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The limits of every listener: the configured connection caps fitted to
/// the open-file limit (raised to its hard limit first), the main one split
/// over the serving threads.
struct ListenerLimits {
    main: Vec<serve::Limits>,
    admin: serve::Limits,
}

fn connection_limits(server: &config::ServerConfig, threads: usize) -> ListenerLimits {
    let (soft, hard) = serve::raise_nofile_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the open-file limit; using the configured connection caps");
        (None, None)
    });
    let caps = serve::connection_caps(server.max_connections, server.admin_max_connections, soft);
    let per_thread = serve::split_cap(caps.main, threads);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    tracing::info!(
        max_connections = server.max_connections,
        effective = caps.main,
        per_thread = ?per_thread,
        admin_max_connections = server.admin_max_connections,
        admin_effective = caps.admin,
        open_files_soft = %show(soft),
        open_files_hard = %show(hard),
        "connection limits: at most half the open-file limit left after {} reserved files and the admin listener",
        serve::FD_RESERVE
    );
    let limits = |max_connections| serve::Limits {
        header_read_timeout: server.header_read_timeout,
        keepalive_timeout: server.keepalive_timeout,
        write_timeout: server.write_timeout,
        http2_max_streams: server.http2_max_concurrent_streams,
        max_connections,
    };
    ListenerLimits {
        main: per_thread.into_iter().map(limits).collect(),
        admin: limits(caps.admin),
    }
}

/// One serving thread's loop: accept and serve until the stage says the
/// listener closes, let requests finish until the drain deadline (see
/// [`serve::serve`]), then let the WebSocket tunnels finish until that
/// deadline. Every thread waits for every tunnel: a tunnel's task runs on
/// the runtime of the thread that opened it, which must live until it ends.
async fn serve_listener<S>(
    listener: TcpListener,
    app: S,
    limits: serve::Limits,
    stage: tokio::sync::watch::Receiver<Stage>,
    tunnels: tokio_util::task::TaskTracker,
) -> std::io::Result<()>
where
    S: tower::Service<axum::extract::Request> + Clone + Send + 'static,
    S::Response: axum::response::IntoResponse,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let result = serve::serve(listener, app, limits, stage.clone()).await;
    tunnels.close();
    let deadline = match *stage.borrow() {
        Stage::Closed { deadline } => deadline,
        // Only a closed stage ends `serve::serve`.
        _ => tokio::time::Instant::now(),
    };
    if tokio::time::timeout_at(deadline, tunnels.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tunnels.len(),
            "WebSocket tunnels still open at the shutdown deadline"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::bind_workers;

    #[test]
    fn worker_sockets_share_one_port_and_refuse_a_taken_one() {
        let any = "127.0.0.1:0".parse().unwrap();
        let sockets = bind_workers(any, 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(
            ports[0] != 0 && ports.iter().all(|p| *p == ports[0]),
            "{ports:?}"
        );
        // A second gateway on the same port: refused, though both would set SO_REUSEPORT.
        let taken = sockets[0].local_addr().unwrap();
        let err = bind_workers(taken, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // Also when the port is held by a plain listener.
        let plain = std::net::TcpListener::bind(any).unwrap();
        let err = bind_workers(plain.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // Once they are gone, the port is free again.
        let port = plain.local_addr().unwrap();
        drop((sockets, plain));
        assert_eq!(bind_workers(port, 2).unwrap().len(), 2);
    }
}

/// The layering rule, checked on the source: the core (`claims`, `config`, `policy`,
/// `oidc`, `session`, `request_path`, `clock`) knows nothing of HTTP handlers, the
/// proxy, the router, the error pages or the demo. Upper layers may use the
/// core; the core never uses them.
#[cfg(test)]
mod inherited_socket_tests {
    use super::adopt_listener;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn is_open(fd: i32) -> bool {
        // SAFETY: F_GETFD reads flags only.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    fn cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD reads flags only.
        unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
    }

    /// A pipe made without `O_CLOEXEC`, as a parent hands one down.
    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both were just opened and are owned here alone.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn descriptors_that_are_not_listening_tcp_sockets_are_refused_and_left_open() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        tcp.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("attack3-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let (r, w) = pipe();
        for (what, fd) in [
            ("udp", udp.as_raw_fd()),
            ("tcp, bound, not listening", tcp.as_raw_fd()),
            ("unix listener", unix.as_raw_fd()),
            ("pipe", r.as_raw_fd()),
        ] {
            let err = adopt_listener(fd).expect_err(what);
            assert!(
                err.to_string().contains("not a listening TCP socket"),
                "{what}: {err}"
            );
            assert!(is_open(fd), "{what}: still open, not ours to close");
        }
        // A descriptor that is not open is refused without a panic.
        // (A number far above any open one: a closed number could be reused
        // by a test running in parallel.)
        let closed = 1_000_000;
        assert!(!is_open(closed));
        assert!(adopt_listener(closed).is_err());
        drop((udp, tcp, unix, w));
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn a_refused_descriptor_keeps_its_flags() {
        let (r, _w) = pipe();
        assert!(!cloexec(r.as_raw_fd()));
        assert!(adopt_listener(r.as_raw_fd()).is_err());
        assert!(
            !cloexec(r.as_raw_fd()),
            "the descriptor it says is not its own was changed"
        );
    }
}

#[cfg(test)]
mod layering {
    const CORE: [&str; 7] = [
        "claims",
        "config",
        "policy",
        "oidc",
        "session",
        "request_path",
        "clock",
    ];
    const UPPER: [&str; 9] = [
        "admin",
        "app",
        "auth",
        "proxy",
        "router",
        "error",
        "demo",
        "telemetry",
        "serve",
    ];

    fn sources(module: &str) -> Vec<(std::path::PathBuf, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            out.push(file);
        }
        let mut dirs = vec![src.join(module)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        out.into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect()
    }

    #[test]
    fn the_core_never_imports_an_upper_layer() {
        let mut seen = 0;
        let mut violations = Vec::new();
        for module in CORE {
            for (path, text) in sources(module) {
                seen += 1;
                for (n, line) in text.lines().enumerate() {
                    for upper in UPPER {
                        if line.contains(&format!("crate::{upper}::"))
                            || line.contains(&format!("crate::{upper};"))
                            || line.contains(&format!("crate::{upper}}}"))
                            || line.contains(&format!("crate::{{{upper}"))
                        {
                            violations.push(format!("{}:{}: {line}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        assert!(seen >= 20, "the core's files were not found ({seen})");
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}
