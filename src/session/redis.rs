//! The Redis session store, for replicas that share sessions: one server
//! (`redis://`, `rediss://`) or a Redis Cluster, through fred.
//!
//! Redis only ever sees what `Sessions` hands down: opaque keys (hashes of
//! session ids, keyed hashes of `sub`/`sid`) and AES-256-GCM sealed bytes.
//! Key layout, under a configurable prefix (`oidc-bff:` by default):
//! - `<prefix>s:<store key>`: a sealed record, with a TTL (`SET … PX`);
//! - `<prefix>sub:<hash>`, `<prefix>sid:<hash>`: index sets of store keys,
//!   whose TTL is pushed out to the longest-lived member on every add.
//!
//! Every command touches one key, so nothing needs hash tags in a cluster.
//! Every call is bounded by `redis_timeout` and fails fast while the client
//! is disconnected (a 503 at once rather than a queue of waiting requests);
//! fred reconnects in the background, so recovery needs no restart.

use super::store::{SessionStore, StoreError};
use async_trait::async_trait;
use fred::prelude::{
    Builder, ClientLike, Expiration, KeysInterface, LuaInterface, ReconnectPolicy, SetOptions,
    SetsInterface,
};
use fred::types::config::{
    Config as FredConfig, Options, ServerConfig, TcpConfig, TlsConfig, TlsConnector,
    TlsHostMapping, UnresponsiveConfig,
};
use futures_util::future::try_join_all;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Adds a member to an index set and pushes the set's expiry out to at least
/// the member's (never shortens it: other members may live longer). One key,
/// atomic, and it works on Redis 6 as well as 7 (`PEXPIRE … GT` is 7-only and
/// treats a set without expiry as infinite, which a fresh set is).
const INDEX_ADD_LUA: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"#;

/// Deletes a claim only while it still holds the caller's token.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Where Redis is, as parsed from one `redis://` / `rediss://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: Option<u8>,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("database", &self.database)
            .finish()
    }
}

/// Parses `redis[s]://[[user]:password@]host[:port][/db]`. Errors never echo
/// the URL: it may hold a password.
pub fn parse_url(text: &str) -> Result<RedisEndpoint, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "must start with redis:// or rediss:// (not {other}://)"
            ))
        }
    };
    let host = match url.host() {
        // fred resolves `format!("{host}:{port}")`: an IPv6 literal needs its brackets.
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => return Err("must name a host".into()),
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "has user info that is not UTF-8 once percent-decoded".to_string())
    };
    let username = Some(url.username())
        .filter(|u| !u.is_empty())
        .map(decode)
        .transpose()?;
    let password = url
        .password()
        .filter(|p| !p.is_empty())
        .map(decode)
        .transpose()?;
    let database = match url.path().trim_start_matches('/') {
        "" => None,
        db => Some(db.parse::<u8>().map_err(|_| {
            "has a path that is not a database number, e.g. redis://host:6379/0".to_string()
        })?),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not have a query or fragment (use the session.redis_* keys for options)".into(),
        );
    }
    Ok(RedisEndpoint {
        tls,
        host,
        port: url.port().unwrap_or(6379),
        username,
        password,
        database,
    })
}

/// Reads the CA certificates of a `redis_ca_file` (PEM). At least one is required.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a PEM certificate file ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Where and how to connect, already validated (see `config::validate`).
#[derive(Clone)]
pub struct RedisOptions {
    /// One endpoint for a single server; several seed nodes for a cluster.
    pub endpoints: Vec<RedisEndpoint>,
    pub cluster: bool,
    /// Overrides the URL's user (ACL) and password when set.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates to trust for `rediss://` instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    /// Bound of every call (and of connecting).
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("endpoints", &self.endpoints)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Sealed records and index sets in Redis.
pub struct RedisStore {
    client: fred::prelude::Client,
    options: Options,
    prefix: String,
    timeout: Duration,
    connection: tokio::task::JoinHandle<Result<(), fred::error::Error>>,
}

impl RedisStore {
    /// Builds the client and starts connecting in the background: the gateway
    /// starts (and serves public routes, with `/readyz` failing) even while
    /// Redis is down. Needs a Tokio runtime.
    pub fn connect(opts: RedisOptions) -> Result<RedisStore, StoreError> {
        let first = opts
            .endpoints
            .first()
            .ok_or_else(|| StoreError::Unavailable("no Redis endpoint configured".into()))?;
        let server = if opts.cluster {
            ServerConfig::new_clustered(
                opts.endpoints
                    .iter()
                    .map(|e| (e.host.clone(), e.port))
                    .collect(),
            )
        } else {
            ServerConfig::new_centralized(first.host.clone(), first.port)
        };
        let tls = if first.tls {
            let connector = tls_connector(opts.ca_pem.as_deref())?;
            Some(TlsConfig {
                connector,
                // Cluster nodes announce IP addresses; the certificate names the
                // host the client was configured with.
                hostnames: if opts.cluster {
                    TlsHostMapping::DefaultHost
                } else {
                    TlsHostMapping::None
                },
            })
        } else {
            None
        };
        let config = FredConfig {
            // Do not fail start-up when Redis is down: keep retrying in the
            // background under the reconnect policy below.
            fail_fast: false,
            username: opts.username.clone().or_else(|| first.username.clone()),
            password: opts.password.clone().or_else(|| first.password.clone()),
            server,
            database: first.database,
            tls,
            ..FredConfig::default()
        };
        let timeout = opts.timeout;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                // A connection that stops answering (a paused server, a dropped
                // route) is closed and re-made rather than trusted forever.
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(timeout * 2),
                    interval: (timeout / 2).max(Duration::from_millis(100)),
                };
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                };
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            // Forever, quickly: back within about a second of Redis returning.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("Redis client: {e}")))?;
        let connection = client.connect();
        Ok(RedisStore {
            client,
            options: Options {
                timeout: Some(timeout),
                // While disconnected, answer at once (503) instead of queueing.
                fail_fast: true,
                ..Options::default()
            },
            prefix: opts.key_prefix,
            timeout,
            connection,
        })
    }

    /// Waits until the client is connected, at most `within`.
    pub async fn wait_connected(&self, within: Duration) -> Result<(), StoreError> {
        if self.client.is_connected() {
            return Ok(());
        }
        match tokio::time::timeout(within, self.client.wait_for_connect()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable("connect", e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "not connected within {within:?}"
            ))),
        }
    }

    fn record_key(&self, key: &str) -> String {
        format!("{}s:{key}", self.prefix)
    }

    fn claim_key(&self, key: &str) -> String {
        format!("{}l:{key}", self.prefix)
    }

    fn index_key(&self, index: &str) -> String {
        format!("{}{index}", self.prefix)
    }

    /// Runs one store operation under the overall deadline: fred bounds each
    /// command, this bounds the whole (an index read is several commands).
    async fn bounded<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(what, e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // The connection task would otherwise reconnect forever.
        self.connection.abort();
    }
}

fn unavailable(what: &str, e: fred::error::Error) -> StoreError {
    StoreError::Unavailable(format!("Redis {what}: {e}"))
}

fn tls_connector(ca_pem: Option<&[u8]>) -> Result<TlsConnector, StoreError> {
    let tls_err = |e: String| StoreError::Unavailable(format!("Redis TLS: {e}"));
    let Some(pem) = ca_pem else {
        // The system's roots (the process-wide aws-lc-rs provider is installed first).
        return TlsConnector::default_rustls().map_err(|e| tls_err(e.to_string()));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_ca_pem(pem).map_err(tls_err)? {
        roots.add(cert).map_err(|e| tls_err(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(config))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client.with_options(&self.options);
        let v: Option<bytes::Bytes> = self.bounded("GET", c.get(self.record_key(key))).await?;
        Ok(v.map(|b| b.to_vec()))
    }

    async fn save(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        let px = Expiration::PX(ttl.as_millis().max(1) as i64);
        self.bounded(
            "SET",
            c.set::<(), _, _>(self.record_key(key), value, Some(px), None, false),
        )
        .await
    }

    async fn replace(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, StoreError> {
        let c = self.client.with_options(&self.options);
        let px = Expiration::PX(ttl.as_millis().max(1) as i64);
        let set: Option<String> = self
            .bounded(
                "SET XX",
                c.set(
                    self.record_key(key),
                    value,
                    Some(px),
                    Some(SetOptions::XX),
                    false,
                ),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        self.bounded("DEL", c.del::<i64, _>(self.record_key(key)))
            .await
            .map(drop)
    }

    async fn index_add(&self, index: &str, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        let ttl_ms = ttl.as_millis().max(1) as i64;
        self.bounded(
            "index add",
            c.eval::<i64, _, _, _>(
                INDEX_ADD_LUA,
                self.index_key(index),
                vec![member.to_string(), ttl_ms.to_string()],
            ),
        )
        .await
        .map(drop)
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let c = self.client.with_options(&self.options);
        let ikey = self.index_key(index);
        let work = async {
            let members: Vec<String> = c.smembers(&ikey).await?;
            // One EXISTS per member: in a cluster each record is in its own slot.
            let exists = try_join_all(
                members
                    .iter()
                    .map(|m| c.exists::<i64, _>(self.record_key(m))),
            )
            .await?;
            let (live, gone): (Vec<(String, i64)>, Vec<(String, i64)>) =
                members.into_iter().zip(exists).partition(|(_, n)| *n > 0);
            if !gone.is_empty() {
                let gone: Vec<String> = gone.into_iter().map(|(m, _)| m).collect();
                c.srem::<i64, _, _>(&ikey, gone).await?;
            }
            Ok(live.into_iter().map(|(m, _)| m).collect())
        };
        self.bounded("index read", work).await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        self.bounded(
            "SREM",
            c.srem::<i64, _, _>(self.index_key(index), member.to_string()),
        )
        .await
        .map(drop)
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let c = self.client.with_options(&self.options);
        let px = Expiration::PX(ttl.as_millis().max(1) as i64);
        let set: Option<String> = self
            .bounded(
                "SET NX",
                c.set(
                    self.claim_key(key),
                    owner.to_string(),
                    Some(px),
                    Some(SetOptions::NX),
                    false,
                ),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        self.bounded(
            "release",
            c.eval::<i64, _, _, _>(RELEASE_LUA, self.claim_key(key), vec![owner.to_string()]),
        )
        .await
        .map(drop)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client.with_options(&self.options);
        self.bounded("PING", c.ping::<String>(None)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_endpoints() {
        let e = parse_url("redis://localhost").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.database),
            (false, "localhost", 6379, None)
        );
        assert_eq!((e.username, e.password), (None, None));

        let e = parse_url("rediss://app:p%40ss@redis.internal:6380/3").unwrap();
        assert!(e.tls);
        assert_eq!(
            (e.host.as_str(), e.port, e.database),
            ("redis.internal", 6380, Some(3))
        );
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("p@ss"));

        let e = parse_url("redis://:only-password@10.0.0.1:7000/").unwrap();
        assert_eq!(
            (e.username, e.password.as_deref(), e.database),
            (None, Some("only-password"), None)
        );

        let e = parse_url("redis://[::1]:7001").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", 7001));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "http://redis:6379",
            "redis://:secret-pw@redis:6379/notanumber",
            "redis://:secret-pw@redis:6379/300",
            "redis://:secret-pw@redis:6379/0?timeout=1",
            "redis://",
            "not a url secret-pw",
            "unix:///var/run/redis.sock",
        ] {
            let err = parse_url(bad).expect_err(bad);
            assert!(!err.contains("secret-pw"), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let e = parse_url("redis://u:hunter2@h:1").unwrap();
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn ca_files_need_a_certificate() {
        assert!(parse_ca_pem(b"").is_err());
        assert!(parse_ca_pem(b"just text").is_err());
        let pem =
            b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJc3Q\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_ca_pem(pem).map(|c| c.len()), Ok(1));
    }
}
