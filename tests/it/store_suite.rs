//! One behaviour suite for every session store: the memory store, a real
//! `redis-server`, a 3-node Redis Cluster and a TLS Redis with an ACL user.
//! Whatever one store does (expiry, the sub/sid index, rotation, nothing in
//! clear), the others must do the same.

use crate::harness::*;
use oidc_bff::session::{
    redis, KeyRing, MemoryStore, RedisOptions, RedisStore, SessionData, SessionStore, Sessions,
};
use std::sync::Arc;
use std::time::Duration;

/// A store under test, and a way to see everything it holds.
struct Backend {
    store: Arc<dyn SessionStore>,
    dump: Box<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>,
}

async fn redis_backend(
    endpoints: Vec<String>,
    cluster: bool,
    dump: impl Fn(&str) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static,
) -> Backend {
    redis_backend_with(endpoints, cluster, None, None, dump).await
}

async fn redis_backend_with(
    endpoints: Vec<String>,
    cluster: bool,
    ca_pem: Option<Vec<u8>>,
    credentials: Option<(&str, &str)>,
    dump: impl Fn(&str) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static,
) -> Backend {
    oidc_bff::install_crypto_provider();
    let prefix = format!("suite-{}:", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(RedisOptions {
        endpoints: endpoints
            .iter()
            .map(|u| redis::parse_url(u).unwrap())
            .collect(),
        cluster,
        username: credentials.map(|c| c.0.to_string()),
        password: credentials.map(|c| c.1.to_string()),
        ca_pem,
        key_prefix: prefix.clone(),
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    store
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("Redis store connects");
    let pattern = format!("{prefix}*");
    Backend {
        store: Arc::new(store),
        dump: Box::new(move || dump(&pattern)),
    }
}

fn memory_backend() -> Backend {
    let store = Arc::new(MemoryStore::new(1000));
    let inspect = store.clone();
    Backend {
        store,
        dump: Box::new(move || {
            inspect
                .keys()
                .into_iter()
                // A key gone between the two reads is gone, as in the Redis dump.
                .filter_map(|k| inspect.raw(&k).map(|v| (k, v)))
                .collect()
        }),
    }
}

async fn run_suite(b: &Backend) {
    records_round_trip_and_expire(b).await;
    index_follows_its_members(b).await;
    sessions_are_indexed_by_sub_and_sid(b).await;
    rotation_keeps_sessions_findable(b).await;
    nothing_in_clear(b).await;
    admin_lists_and_ends_by_handle(b).await;
}

#[tokio::test]
async fn memory() {
    run_suite(&memory_backend()).await;
}

#[tokio::test]
async fn redis_single() {
    let server = RedisServer::start();
    let port = server.port;
    let b = redis_backend(vec![server.url()], false, move |p| dump_node(port, p)).await;
    run_suite(&b).await;
    // Redis-only: an index set expires by itself with its last member, even unread.
    index_sets_expire_in_redis(&b).await;
    b.store.ping().await.unwrap();
}

#[tokio::test]
async fn redis_cluster() {
    let cluster = Arc::new(RedisCluster::start());
    let c = cluster.clone();
    let b = redis_backend(cluster.urls(), true, move |p| c.dump(p)).await;
    run_suite(&b).await;
    index_sets_expire_in_redis(&b).await;
    // Records and index sets were spread over the nodes (no hash tag pins them to one).
    let spread = cluster
        .nodes
        .iter()
        .filter(|n| !n.dump("suite-*").is_empty())
        .count();
    assert!(spread >= 2, "keys on {spread} node(s) only");
}

#[tokio::test]
async fn redis_tls_with_ca_file_and_acl_user() {
    let certs = TestCerts::generate();
    let server = RedisServer::start_tls(&[
        "--tls-cert-file",
        &certs.server_cert,
        "--tls-key-file",
        &certs.server_key,
        "--tls-ca-cert-file",
        &certs.ca_cert,
        "--tls-auth-clients",
        "no",
        "--user",
        "app",
        "on",
        ">app-pass-42",
        "~*",
        "+@all",
    ]);
    let (port, tls_port) = (server.port, server.tls_port.unwrap());
    let ca = std::fs::read(&certs.ca_cert).unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");

    // The right CA and user: the whole suite passes over TLS.
    let b = redis_backend_with(
        vec![url.clone()],
        false,
        Some(ca.clone()),
        Some(("app", "app-pass-42")),
        move |p| dump_node(port, p),
    )
    .await;
    run_suite(&b).await;

    // A wrong password, or a CA that did not sign the server: never connected, 503 material.
    for (ca, creds) in [
        (Some(ca.clone()), ("app", "wrong")),
        (Some(certs.other_ca()), ("app", "app-pass-42")),
    ] {
        let store = RedisStore::connect(RedisOptions {
            endpoints: vec![redis::parse_url(&url).unwrap()],
            cluster: false,
            username: Some(creds.0.into()),
            password: Some(creds.1.into()),
            ca_pem: ca,
            key_prefix: "x:".into(),
            timeout: Duration::from_millis(500),
        })
        .unwrap();
        assert!(store.wait_connected(Duration::from_secs(2)).await.is_err());
        assert!(store.ping().await.is_err());
        assert!(store.load("k").await.is_err());
    }
    drop(server);
}

// ------------------------------------------------------------ the suite ---

async fn records_round_trip_and_expire(b: &Backend) {
    let s = &b.store;
    assert_eq!(s.load("rec-missing").await.unwrap(), None);
    s.save("rec-a", b"one".to_vec(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.load("rec-a").await.unwrap().as_deref(), Some(&b"one"[..]));
    s.save("rec-a", b"two".to_vec(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        s.load("rec-a").await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "overwrite"
    );
    // Binary values survive as they are (sealed records are not text).
    let binary: Vec<u8> = (0..=255u8).collect();
    s.save("rec-bin", binary.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.load("rec-bin").await.unwrap(), Some(binary));
    s.save("rec-short", b"x".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(s.load("rec-short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.load("rec-short").await.unwrap(),
        None,
        "record outlived its TTL"
    );
    s.delete("rec-a").await.unwrap();
    s.delete("rec-a").await.unwrap(); // deleting twice is fine
    s.delete("rec-bin").await.unwrap();
    assert_eq!(s.load("rec-a").await.unwrap(), None);

    // `replace` writes over a live record only: never over a deleted or
    // expired one (an ended session must not come back).
    let ttl = Duration::from_secs(60);
    assert!(!s.replace("rec-a", b"back".to_vec(), ttl).await.unwrap());
    assert!(!s.replace("rec-short", b"back".to_vec(), ttl).await.unwrap());
    assert!(!s.replace("rec-never", b"new".to_vec(), ttl).await.unwrap());
    for key in ["rec-a", "rec-short", "rec-never"] {
        assert_eq!(s.load(key).await.unwrap(), None, "{key} brought back");
    }
    s.save("rec-r", b"one".to_vec(), ttl).await.unwrap();
    assert!(s.replace("rec-r", b"two".to_vec(), ttl).await.unwrap());
    assert_eq!(s.load("rec-r").await.unwrap().as_deref(), Some(&b"two"[..]));
    s.delete("rec-r").await.unwrap();
}

async fn index_follows_its_members(b: &Backend) {
    let s = &b.store;
    let ttl = Duration::from_secs(60);
    assert!(s.index_members("sub:idx-empty").await.unwrap().is_empty());
    // Index first, record second (the order `Sessions` writes in).
    for k in ["m1", "m2", "m3"] {
        s.index_add("sub:idx", k, ttl).await.unwrap();
        s.save(k, b"r".to_vec(), ttl).await.unwrap();
    }
    s.index_add("sub:idx", "m1", ttl).await.unwrap(); // twice: still one member
    assert_eq!(
        sorted(s.index_members("sub:idx").await.unwrap()),
        ["m1", "m2", "m3"]
    );
    // A member whose record is gone is dropped when read.
    s.delete("m2").await.unwrap();
    assert_eq!(
        sorted(s.index_members("sub:idx").await.unwrap()),
        ["m1", "m3"]
    );
    s.index_remove("sub:idx", "m1").await.unwrap();
    s.index_remove("sub:idx", "not-a-member").await.unwrap();
    assert_eq!(s.index_members("sub:idx").await.unwrap(), ["m3"]);
    // A short-lived member does not shorten the set's life.
    s.index_add("sub:idx", "m4", Duration::from_millis(300))
        .await
        .unwrap();
    s.save("m4", b"r".to_vec(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        sorted(s.index_members("sub:idx").await.unwrap()),
        ["m3", "m4"]
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.index_members("sub:idx").await.unwrap(),
        ["m3"],
        "expired member listed, or live one lost"
    );
    s.delete("m3").await.unwrap();
    s.delete("m1").await.unwrap();
    assert!(s.index_members("sub:idx").await.unwrap().is_empty());
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn data(sub: &str, sid: Option<&str>) -> SessionData {
    let now = now();
    SessionData {
        sub: sub.into(),
        sid: sid.map(str::to_string),
        claims: serde_json::json!({ "email": format!("{sub}@mail.test") })
            .as_object()
            .unwrap()
            .clone(),
        id_token: format!("eyJ-idtoken-{sub}"),
        access_token: format!("access-token-{sub}"),
        refresh_token: Some(format!("refresh-token-{sub}")),
        access_expires_at: Some(now + 300),
        scope: None,
        created_at: now,
        expires_at: now + 3600,
        last_seen: now,
        refreshed_at: None,
        user_agent: None,
    }
}

fn sessions(b: &Backend, keys: &[[u8; 32]]) -> Sessions {
    Sessions::new(
        Arc::new(KeyRing::new(keys)),
        b.store.clone(),
        Duration::from_secs(600),
        Duration::from_secs(3600),
    )
}

async fn sessions_are_indexed_by_sub_and_sid(b: &Backend) {
    let s = sessions(b, &[[11; 32]]);
    let (a1, c1) = s
        .create(data("suite-alice", Some("idp-sid-1")))
        .await
        .unwrap();
    let (_, c2) = s
        .create(data("suite-alice", Some("idp-sid-2")))
        .await
        .unwrap();
    let (_, c3) = s
        .create(data("suite-bob", Some("idp-sid-3")))
        .await
        .unwrap();
    let (_, c4) = s.create(data("suite-carol", None)).await.unwrap();
    assert_eq!(s.sessions_of_sub("suite-alice").await.unwrap().len(), 2);
    assert_eq!(s.sessions_of_sub("suite-bob").await.unwrap().len(), 1);
    assert_eq!(s.sessions_of_sub("suite-carol").await.unwrap().len(), 1);
    assert!(s.sessions_of_sub("suite-nobody").await.unwrap().is_empty());
    assert_eq!(
        s.sessions_of_sid("idp-sid-1").await.unwrap(),
        [a1.store_key()]
    );

    // Back-channel logout of one IdP session ends that session only.
    assert_eq!(s.delete_by_sid("idp-sid-1").await.unwrap(), 1);
    assert!(s.load(&c1).await.unwrap().is_none());
    assert!(s.load(&c2).await.unwrap().is_some());
    assert_eq!(
        s.sessions_of_sub("suite-alice").await.unwrap().len(),
        1,
        "index kept consistent"
    );
    assert_eq!(
        s.delete_by_sid("idp-sid-1").await.unwrap(),
        0,
        "twice is a no-op"
    );

    // Sign out everywhere ends all of one user's sessions, nobody else's.
    s.create(data("suite-alice", None)).await.unwrap();
    assert_eq!(s.delete_all_of_sub("suite-alice").await.unwrap(), 2);
    assert!(s.load(&c2).await.unwrap().is_none());
    assert!(s.sessions_of_sub("suite-alice").await.unwrap().is_empty());
    assert!(s.sessions_of_sid("idp-sid-2").await.unwrap().is_empty());
    assert!(s.load(&c3).await.unwrap().is_some());

    // An ordinary logout takes the session out of both indexes.
    let bob = s.load(&c3).await.unwrap().unwrap();
    s.delete(&bob.id).await.unwrap();
    assert!(s.sessions_of_sub("suite-bob").await.unwrap().is_empty());
    assert!(s.sessions_of_sid("idp-sid-3").await.unwrap().is_empty());
    let carol = s.load(&c4).await.unwrap().unwrap();
    s.delete(&carol.id).await.unwrap();
    assert!(s.sessions_of_sub("suite-carol").await.unwrap().is_empty());
}

/// The admin API's view: a user's sessions listed by handle (no token, id or
/// store key), one ended by its handle, only for its own user; the record
/// goes from the store and from the index.
async fn admin_lists_and_ends_by_handle(b: &Backend) {
    let s = sessions(b, &[[12; 32]]);
    let sub = "suite-admin/ü+1";
    let mut first = data(sub, Some("idp-sid-admin"));
    first.user_agent = Some("Firefox 128 on Linux".into());
    let (a1, c1) = s.create(first).await.unwrap();
    let (_, c2) = s.create(data(sub, None)).await.unwrap();
    let (_, other) = s.create(data("suite-admin-other", None)).await.unwrap();
    let listed = s.list_of_sub(sub).await.unwrap();
    assert_eq!(listed.len(), 2);
    let text = serde_json::to_string(&listed).unwrap();
    for secret in ["token", &c1, &c2, &a1.store_key()] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let h1 = listed
        .iter()
        .find(|l| l.user_agent.is_some())
        .unwrap()
        .handle
        .clone();
    assert!(!s.delete_by_handle("suite-admin-other", &h1).await.unwrap());
    assert!(s.delete_by_handle(sub, &h1).await.unwrap());
    assert!(s.load(&c1).await.unwrap().is_none());
    assert!(!(b.dump)().iter().any(|(k, _)| k.ends_with(&a1.store_key())));
    assert!(s.sessions_of_sid("idp-sid-admin").await.unwrap().is_empty());
    assert!(
        !s.delete_by_handle(sub, &h1).await.unwrap(),
        "404 the second time"
    );
    assert_eq!(s.list_of_sub(sub).await.unwrap().len(), 1);
    assert!(s.load(&c2).await.unwrap().is_some());
    assert_eq!(s.delete_all_of_sub(sub).await.unwrap(), 1);
    assert!(s.load(&other).await.unwrap().is_some());
    assert_eq!(s.delete_all_of_sub("suite-admin-other").await.unwrap(), 1);
}

async fn rotation_keeps_sessions_findable(b: &Backend) {
    const OLD: [u8; 32] = [21; 32];
    const NEW: [u8; 32] = [22; 32];
    let old = sessions(b, &[OLD]);
    let (used_id, used) = old
        .create(data("suite-dave", Some("idp-sid-d1")))
        .await
        .unwrap();
    let (_, unused) = old
        .create(data("suite-dave", Some("idp-sid-d2")))
        .await
        .unwrap();
    let key_id = |k: &[u8; 32]| {
        use sha2::{Digest, Sha256};
        Sha256::new_with_prefix(b"oidc-bff key id\0")
            .chain_update(k)
            .finalize()[..4]
            .to_vec()
    };
    let sealed_by = |id_key: &str| {
        let dump = (b.dump)();
        let (_, v) = dump
            .iter()
            .find(|(k, _)| k.ends_with(id_key))
            .expect("record in the store");
        v[1..5].to_vec()
    };
    assert_eq!(sealed_by(&used_id.store_key()), key_id(&OLD));

    // New key first, old kept: everything still opens and is still found.
    let rotated = sessions(b, &[NEW, OLD]);
    assert_eq!(
        rotated.sessions_of_sub("suite-dave").await.unwrap().len(),
        2
    );
    let loaded = rotated
        .load(&used)
        .await
        .unwrap()
        .expect("old-key session opens");
    assert!(
        loaded.reissue_cookie.is_some(),
        "cookie re-issued under the new key"
    );
    assert_eq!(
        sealed_by(&used_id.store_key()),
        key_id(&NEW),
        "re-sealed under the new key"
    );

    // Old key removed: only the session that was re-sealed lives, and only it is found.
    let removed = sessions(b, &[NEW]);
    assert!(removed
        .load(&loaded.reissue_cookie.unwrap())
        .await
        .unwrap()
        .is_some());
    assert!(
        removed.load(&unused).await.unwrap().is_none(),
        "signed out, not an error"
    );
    assert_eq!(
        removed.sessions_of_sub("suite-dave").await.unwrap(),
        [used_id.store_key()]
    );
    assert_eq!(removed.delete_all_of_sub("suite-dave").await.unwrap(), 1);
    // The unused one is cleaned up by whoever still holds the old key (or by its TTL).
    assert_eq!(rotated.delete_all_of_sub("suite-dave").await.unwrap(), 1);
}

async fn nothing_in_clear(b: &Backend) {
    let s = sessions(b, &[[31; 32]]);
    s.create(data("suite-erin", Some("idp-sid-erin")))
        .await
        .unwrap();
    let dump = (b.dump)();
    assert!(!dump.is_empty());
    for (k, v) in &dump {
        for needle in [
            "suite-erin",
            "erin@mail.test",
            "access-token",
            "refresh-token",
            "eyJ-idtoken",
            "idp-sid-erin",
        ] {
            assert!(!k.contains(needle), "{needle} in key {k}");
            assert!(
                !v.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in the value of {k}"
            );
        }
    }
    s.delete_all_of_sub("suite-erin").await.unwrap();
}

/// Redis only: with no reader to prune it, an index set still goes away with
/// its longest-lived member (its TTL is pushed out, never cut short).
async fn index_sets_expire_in_redis(b: &Backend) {
    let s = &b.store;
    // Redis's own clock: long enough apart that a slow dump on a busy
    // machine still looks between the two expiries.
    s.index_add("sub:ttl", "t1", Duration::from_millis(4000))
        .await
        .unwrap();
    s.index_add("sub:ttl", "t2", Duration::from_millis(300))
        .await
        .unwrap();
    let has_set = || (b.dump)().iter().any(|(k, _)| k.ends_with("sub:ttl"));
    assert!(has_set());
    let start = std::time::Instant::now();
    // Past the shorter member's TTL the set is still there ...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(has_set(), "the set lives as long as its longest member");
    // ... and it goes with the longer one (polled: a busy machine is slow).
    while has_set() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the set outlived all its members"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
