//! Logging: tracing to stdout as text or JSON. The per-request line names the
//! method, the path (never the query: it carries codes), the status and the
//! latency, with the request id.

use crate::config::LogFormat;
use axum::extract::Request;
use std::collections::HashMap;
use std::time::Duration;
use tracing::Span;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` wins over the configured level.
///
/// Lines are written to stdout by a thread of their own (a request does not
/// wait for the terminal or the log collector's pipe); none are dropped: when
/// 16 384 lines are waiting, loggers wait. Keep the returned guard until
/// exit: dropping it flushes what is left.
pub fn init(format: LogFormat, level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue's slots are allocated up front (32 bytes each).
        .buffered_lines_limit(16_384)
        .thread_name("oidc-bff-log")
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour codes only on a terminal: in a file or a collector's pipe they
    // are noise, and an ESC byte there must mean something went wrong.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    guard
}

/// The request span: method, path without the query, request id.
pub fn make_span(req: &Request) -> Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path = %crate::claims::log_text(req.uri().path()), request_id = %crate::claims::log_text(request_id))
}

/// Prometheus metrics of one gateway instance (`/metrics` on the admin
/// listener). Kept per instance rather than in a global recorder, so that
/// several gateways in one process (tests, the demo) do not mix their counts.
/// Labels are bounded: route ids from config, method and status classes, and
/// fixed outcome names; never raw paths or user ids.
pub struct Metrics {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    counters: Handles<metrics::Counter>,
    histograms: Handles<metrics::Histogram>,
}

/// Registered series by name and labels. Registering builds a `metrics::Key`
/// (owned label strings) and looks it up in the recorder's registry; this
/// finds the handle from borrowed labels instead, without allocating, which
/// matters for the three samples of every proxied request.
struct Handles<H>(std::sync::RwLock<HashMap<u64, Vec<(metrics::Key, H)>>>);

impl<H: Clone> Handles<H> {
    fn get_or_register(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        register: impl FnOnce(&metrics::Key) -> H,
    ) -> H {
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (name, labels).hash(&mut h);
            h.finish()
        };
        let same = |key: &metrics::Key| {
            key.name() == name
                && key.labels().len() == labels.len()
                && key
                    .labels()
                    .zip(labels)
                    .all(|(l, (k, v))| l.key() == *k && l.value() == *v)
        };
        let found = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .and_then(|series| series.iter().find(|(k, _)| same(k)))
            .map(|(_, h)| h.clone());
        if let Some(handle) = found {
            return handle;
        }
        let key = key(name, labels);
        let handle = register(&key);
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let series = map.entry(hash).or_default();
        if !series.iter().any(|(k, _)| same(k)) {
            series.push((key, handle.clone()));
        }
        handle
    }
}

impl<H> Default for Handles<H> {
    fn default() -> Self {
        Handles(Default::default())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "oidc_bff_requests_total",
        "Requests answered, by route id, method and status class.",
    ),
    (
        "oidc_bff_request_duration_seconds",
        "Time to answer a request (until the response head), by route id.",
    ),
    (
        "oidc_bff_upstream_duration_seconds",
        "Time until an upstream's response head, by route id.",
    ),
    (
        "oidc_bff_logins_total",
        "Completed sign-in callbacks, by outcome.",
    ),
    (
        "oidc_bff_logouts_total",
        "Ended sessions, by kind (user, backchannel).",
    ),
    (
        "oidc_bff_token_refreshes_total",
        "Access-token refreshes at the IdP, by outcome.",
    ),
    (
        "oidc_bff_jwt_verifications_total",
        "JWT verifications, by token kind and outcome.",
    ),
    (
        "oidc_bff_sessions_active",
        "Live sessions in the memory store.",
    ),
    (
        "oidc_bff_session_store_errors_total",
        "Failed session-store operations, by operation.",
    ),
    (
        "oidc_bff_session_store_duration_seconds",
        "Session-store operation latency, by operation.",
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        use metrics::Recorder;
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("static, non-empty buckets")
            .build_recorder();
        for (name, help) in DESCRIPTIONS {
            recorder.describe_counter((*name).into(), None, (*help).into());
        }
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            counters: Handles::default(),
            histograms: Handles::default(),
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.to_string()))
        .collect();
    metrics::Key::from_parts(name, labels)
}

const META: metrics::Metadata<'static> =
    metrics::Metadata::new("oidc_bff", metrics::Level::INFO, None);

impl Metrics {
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        use metrics::Recorder;
        self.counters
            .get_or_register(name, labels, |k| self.recorder.register_counter(k, &META))
            .increment(1);
    }

    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        use metrics::Recorder;
        self.histograms
            .get_or_register(name, labels, |k| self.recorder.register_histogram(k, &META))
            .record(seconds);
    }

    pub fn gauge(&self, name: &'static str, value: f64) {
        use metrics::Recorder;
        self.recorder
            .register_gauge(&key(name, &[]), &META)
            .set(value);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram buffers; run now and then (the admin server does).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Method label: the common methods by name, anything else as "other".
pub fn method_class(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn status_class(s: http::StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Set on a response by whoever knows which route served it (the proxy).
#[derive(Clone, Debug)]
pub struct RouteLabel(pub String);

/// Set on a response by whoever knows who made the request: the `sub` for the log line.
#[derive(Clone, Debug)]
pub struct RequestUser(pub String);

/// A session store that times every call and counts failures.
pub struct InstrumentedStore {
    pub inner: std::sync::Arc<dyn crate::session::SessionStore>,
    pub metrics: std::sync::Arc<Metrics>,
}

impl InstrumentedStore {
    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T, crate::session::StoreError>>,
    ) -> Result<T, crate::session::StoreError> {
        let start = std::time::Instant::now();
        let r = f.await;
        self.metrics.observe(
            "oidc_bff_session_store_duration_seconds",
            &[("op", op)],
            start.elapsed().as_secs_f64(),
        );
        if r.is_err() {
            self.metrics
                .count("oidc_bff_session_store_errors_total", &[("op", op)]);
        }
        r
    }
}

#[async_trait::async_trait]
impl crate::session::SessionStore for InstrumentedStore {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, crate::session::StoreError> {
        self.timed("load", self.inner.load(key)).await
    }
    async fn save(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), crate::session::StoreError> {
        self.timed("save", self.inner.save(key, value, ttl)).await
    }
    async fn replace(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, crate::session::StoreError> {
        self.timed("replace", self.inner.replace(key, value, ttl))
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), crate::session::StoreError> {
        self.timed("delete", self.inner.delete(key)).await
    }
    async fn index_add(
        &self,
        index: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), crate::session::StoreError> {
        self.timed("index_add", self.inner.index_add(index, member, ttl))
            .await
    }
    async fn index_members(&self, index: &str) -> Result<Vec<String>, crate::session::StoreError> {
        self.timed("index_members", self.inner.index_members(index))
            .await
    }
    async fn index_remove(
        &self,
        index: &str,
        member: &str,
    ) -> Result<(), crate::session::StoreError> {
        self.timed("index_remove", self.inner.index_remove(index, member))
            .await
    }
    async fn claim(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, crate::session::StoreError> {
        self.timed("claim", self.inner.claim(key, owner, ttl)).await
    }
    async fn release(&self, key: &str, owner: &str) -> Result<(), crate::session::StoreError> {
        self.timed("release", self.inner.release(key, owner)).await
    }
    async fn ping(&self) -> Result<(), crate::session::StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
    fn len_hint(&self) -> Option<u64> {
        self.inner.len_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_labels() {
        let m = Metrics::default();
        m.count("oidc_bff_logins_total", &[("outcome", "success")]);
        m.count("oidc_bff_logins_total", &[("outcome", "success")]);
        m.observe(
            "oidc_bff_request_duration_seconds",
            &[("route", "/api/")],
            0.003,
        );
        m.gauge("oidc_bff_sessions_active", 3.0);
        let text = m.render();
        assert!(
            text.contains("oidc_bff_logins_total{outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "oidc_bff_request_duration_seconds_bucket{route=\"/api/\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("oidc_bff_sessions_active 3"), "{text}");
        assert!(text.contains("# HELP oidc_bff_logins_total"), "{text}");
    }

    #[test]
    fn cached_handles_keep_series_apart() {
        let m = Metrics::default();
        for (route, n) in [("a", 3), ("b", 1), ("ab", 2)] {
            for _ in 0..n {
                m.count(
                    "oidc_bff_requests_total",
                    &[("route", route), ("method", "GET"), ("status", "2xx")],
                );
            }
        }
        m.count(
            "oidc_bff_requests_total",
            &[("route", "a"), ("method", "GET"), ("status", "5xx")],
        );
        let text = m.render();
        for line in [
            "oidc_bff_requests_total{route=\"a\",method=\"GET\",status=\"2xx\"} 3",
            "oidc_bff_requests_total{route=\"b\",method=\"GET\",status=\"2xx\"} 1",
            "oidc_bff_requests_total{route=\"ab\",method=\"GET\",status=\"2xx\"} 2",
            "oidc_bff_requests_total{route=\"a\",method=\"GET\",status=\"5xx\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
