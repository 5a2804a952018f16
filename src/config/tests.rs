//! Validation tests: one minimal valid config, and a table of single changes
//! that each must be refused with the exact key named and a readable message.
//!
//! No test here sets an environment variable: the environment is process-global
//! and every `load_from_str` reads it while tests run in parallel. Overrides are
//! tested on the binary, in a child process with its own environment
//! (`tests/it/cli.rs`).

use super::*;
use std::path::PathBuf;

const KEY_A: &str = "EXAMPLE-ONLY-replace-me-with-generate-key00";
const KEY_B: &str = "rKFjFOFP6sPFwG0ckYs4P92X-dRWoYVFbgJduZp0nJ8";

/// The smallest valid config, with two routes so route indices can be tested.
fn base() -> String {
    format!(
        r#"[server]
public_url = "https://app.example.com"

[provider]
issuer = "https://idp.example.com"
client_id = "bff"

[session]
keys = ["{KEY_A}"]

[[route]]
path = "/api"
upstream = "http://api.internal:8080"

[[route]]
path = "/other"
upstream = "http://other.internal:8080"
"#
    )
}

/// `base()` with `from` replaced by `to`; the replacement must happen (a
/// change that silently does nothing would make the test pass for nothing).
fn with(from: &str, to: &str) -> String {
    with_all(&[(from, to)])
}

fn with_all(changes: &[(&str, &str)]) -> String {
    let mut b = base();
    for (from, to) in changes {
        assert!(b.contains(from), "{from:?} is not in the config");
        b = b.replacen(from, to, 1);
    }
    b
}

/// A file under the temp dir that no other test (or test run) uses.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oidc-bff-config-tests-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A message meant for people: a sentence, not a Rust debug dump.
fn assert_readable(p: &Problem) {
    let m = p.message.trim();
    assert!(!m.is_empty(), "{}: empty message", p.key);
    for noise in [
        "Some(",
        "None)",
        "Error {",
        "Problem {",
        "Kind",
        "Ok(",
        "Err(",
        "\\\"",
    ] {
        assert!(
            !m.contains(noise),
            "{}: message {m:?} contains {noise:?}",
            p.key
        );
    }
    let line = p.to_string();
    assert_eq!(line, format!("{}: {}", p.key, p.message));
    assert!(!line.contains('\n'), "{line:?} spans several lines");
}

fn problems(toml: &str) -> Vec<Problem> {
    match load_from_str(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.problems(),
    }
}

#[test]
fn the_base_config_is_valid() {
    let c = load_from_str(&base()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.public_url.as_str(), "https://app.example.com/");
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.session.keys.len(), 1);
    assert_eq!(c.redirect_uri(), "https://app.example.com/auth/callback");
    // The serving loop's limits, as documented in config/oidc-bff.example.toml.
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.admin_max_connections, 64);
    assert_eq!(c.server.write_timeout, Duration::from_secs(30));
    assert_eq!(c.server.body_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_upstream_per_connection, None);
    assert_eq!(c.server.http2_max_concurrent_streams, 100);
}

#[test]
fn bad_configs_name_the_key() {
    let unreadable = std::env::temp_dir()
        .join(format!("oidc-bff-missing-{}", uuid::Uuid::new_v4()))
        .join("secret");
    let unreadable_line = format!(
        "client_id = \"bff\"\nclient_secret_file = {:?}",
        unreadable.display().to_string()
    );
    let cognito = r#"cognito = { region = "eu-west-1", user_pool_id = "eu-west-1_AbC123", domain = "x.auth.eu-west-1.amazoncognito.com" }"#;
    let cases: Vec<(&str, String, &str)> = vec![
        // Unknown keys, one per section: a typo must not silently drop a setting.
        (
            "typo in [server]",
            with("public_url", "lisen = \"0.0.0.0:8080\"\npublic_url"),
            "server.lisen",
        ),
        (
            "typo in [provider]",
            with(
                "client_id = \"bff\"",
                "client_id = \"bff\"\nclient_secrett = \"x\"",
            ),
            "provider.client_secrett",
        ),
        (
            "typo in [session]",
            with("[session]", "[session]\nidle_timout = \"1h\""),
            "session.idle_timout",
        ),
        (
            "typo in [[route]]",
            with(
                "path = \"/other\"",
                "path = \"/other\"\nupstrem = \"http://x\"",
            ),
            "route[1].upstrem",
        ),
        (
            "typo in [spa]",
            format!("{}\n[spa]\ndirr = \"dist\"\n", base()),
            "spa.dirr",
        ),
        (
            "typo in cognito",
            with(
                "issuer = \"https://idp.example.com\"",
                &cognito.replace("domain", "domian"),
            ),
            "provider.cognito.domian",
        ),
        (
            "typo'd section",
            format!("[sesion]\nstore = \"memory\"\n{}", base()),
            "sesion",
        ),
        // Missing required keys.
        (
            "missing public_url",
            with("public_url = \"https://app.example.com\"", ""),
            "server.public_url",
        ),
        (
            "missing client_id",
            with("client_id = \"bff\"", ""),
            "provider.client_id",
        ),
        (
            "missing route upstream",
            with("upstream = \"http://api.internal:8080\"", ""),
            "route[0].upstream",
        ),
        (
            "missing session keys",
            with(&format!("keys = [\"{KEY_A}\"]"), ""),
            "session.keys",
        ),
        // [server]
        (
            "public_url with a path",
            with("https://app.example.com\"", "https://app.example.com/app\""),
            "server.public_url",
        ),
        (
            "http public_url on a public host",
            with("https://app.example.com\"", "http://app.example.com\""),
            "server.public_url",
        ),
        (
            "auth_prefix ending in /",
            with("[server]", "[server]\nauth_prefix = \"/auth/\""),
            "server.auth_prefix",
        ),
        (
            "admin_listen equal to listen",
            with(
                "[server]",
                "[server]\nlisten = \"127.0.0.1:8000\"\nadmin_listen = \"127.0.0.1:8000\"",
            ),
            "server.admin_listen",
        ),
        (
            "absurd number of serving threads",
            with("[server]", "[server]\nworkers = 100000"),
            "server.workers",
        ),
        (
            "no time to send a request head",
            with("[server]", "[server]\nheader_read_timeout = \"0s\""),
            "server.header_read_timeout",
        ),
        (
            "keep-alive connections closed at once",
            with("[server]", "[server]\nkeepalive_timeout = \"0s\""),
            "server.keepalive_timeout",
        ),
        (
            "no connection allowed",
            with("[server]", "[server]\nmax_connections = 0"),
            "server.max_connections",
        ),
        (
            "responses cut at once",
            with("[server]", "[server]\nwrite_timeout = \"0s\""),
            "server.write_timeout",
        ),
        (
            "request bodies cut at once",
            with("[server]", "[server]\nbody_timeout = \"0s\""),
            "server.body_timeout",
        ),
        (
            "no upstream request per connection",
            with("[server]", "[server]\nmax_upstream_per_connection = 0"),
            "server.max_upstream_per_connection",
        ),
        (
            "no HTTP/2 stream allowed",
            with("[server]", "[server]\nhttp2_max_concurrent_streams = 0"),
            "server.http2_max_concurrent_streams",
        ),
        (
            "no admin connection allowed",
            with("[server]", "[server]\nadmin_max_connections = 0"),
            "server.admin_max_connections",
        ),
        (
            "a timeout that is not a duration",
            with("[server]", "[server]\nheader_read_timeout = \"soon\""),
            "server.header_read_timeout",
        ),
        // [provider]
        (
            "http issuer",
            with("issuer = \"https://", "issuer = \"http://"),
            "provider.issuer",
        ),
        (
            "issuer and cognito",
            with(
                "client_id = \"bff\"",
                &format!("client_id = \"bff\"\n{cognito}"),
            ),
            "provider",
        ),
        (
            "neither issuer nor cognito",
            with("issuer = \"https://idp.example.com\"", ""),
            "provider",
        ),
        (
            "cognito pool id of another region",
            with(
                "issuer = \"https://idp.example.com\"",
                &cognito.replace("eu-west-1_AbC123", "us-east-1_AbC123"),
            ),
            "provider.cognito.user_pool_id",
        ),
        (
            "client_secret and client_secret_file",
            with(
                "client_id = \"bff\"",
                "client_id = \"bff\"\nclient_secret = \"s\"\nclient_secret_file = \"secret.txt\"",
            ),
            "provider.client_secret_file",
        ),
        (
            "unreadable client_secret_file",
            with("client_id = \"bff\"", &unreadable_line),
            "provider.client_secret_file",
        ),
        (
            "scopes without openid",
            with(
                "client_id = \"bff\"",
                "client_id = \"bff\"\nscopes = [\"email\"]",
            ),
            "provider.scopes",
        ),
        (
            "http jwks_url",
            with(
                "client_id = \"bff\"",
                "client_id = \"bff\"\njwks_url = \"http://idp.internal/jwks\"",
            ),
            "provider.jwks_url",
        ),
        (
            "reserved extra_auth_params",
            with(
                "client_id = \"bff\"",
                "client_id = \"bff\"\nextra_auth_params = { state = \"fixed\" }",
            ),
            "provider.extra_auth_params.state",
        ),
        // [session]
        (
            "short session key",
            with(KEY_A, "c2hvcnQ"),
            "session.keys[0]",
        ),
        (
            "session key not base64",
            with(KEY_A, "this is not a key at all, not even close!!"),
            "session.keys[0]",
        ),
        (
            "duplicate session keys",
            with(
                &format!("\"{KEY_A}\""),
                &format!("\"{KEY_A}\", \"{KEY_A}\""),
            ),
            "session.keys[1]",
        ),
        (
            "keys and keys_file",
            with("[session]", "[session]\nkeys_file = \"keys.txt\""),
            "session.keys_file",
        ),
        (
            "absolute_timeout below idle_timeout",
            with(
                "[session]",
                "[session]\nidle_timeout = \"2h\"\nabsolute_timeout = \"1h\"",
            ),
            "session.absolute_timeout",
        ),
        (
            "same_site none on http",
            with_all(&[
                ("https://app.example.com", "http://127.0.0.1:8080"),
                ("[session]", "[session]\nsame_site = \"none\""),
            ]),
            "session.same_site",
        ),
        (
            "bad cookie name",
            with("[session]", "[session]\ncookie_name = \"a;b\""),
            "session.cookie_name",
        ),
        (
            "unknown store",
            with("[session]", "[session]\nstore = \"bogus\""),
            "session.store",
        ),
        (
            "redis store without a server",
            with("[session]", "[session]\nstore = \"redis\""),
            "session.store",
        ),
        (
            "redis_url that is not redis://",
            with("[session]", "[session]\nredis_url = \"http://redis:6379\""),
            "session.redis_url",
        ),
        (
            "unparsable duration",
            with("[session]", "[session]\nidle_timeout = \"soon\""),
            "session.idle_timeout",
        ),
        // [[route]]
        (
            "route path without /",
            with("path = \"/api\"", "path = \"api\""),
            "route[0].path",
        ),
        (
            "route path with ..",
            with("path = \"/api\"", "path = \"/api/../admin\""),
            "route[0].path",
        ),
        (
            "route path not canonical",
            with("path = \"/api\"", "path = \"/%61pi\""),
            "route[0].path",
        ),
        (
            "route path with a parameter",
            with("path = \"/api\"", "path = \"/api;v=1\""),
            "route[0].path",
        ),
        (
            "protected header that is no header name",
            with("[server]", "[server]\nprotected_headers = [\"bad header\"]"),
            "server.protected_headers[0]",
        ),
        (
            "duplicate route paths",
            with("path = \"/other\"", "path = \"/api/\""),
            "route[1].path",
        ),
        (
            "route under /auth",
            with("path = \"/api\"", "path = \"/auth/api\""),
            "route[0].path",
        ),
        (
            "lower-case method",
            with(
                "path = \"/api\"",
                "path = \"/api\"\nmethods = [\"GET\", \"post\"]",
            ),
            "route[0].methods",
        ),
        (
            "method with a space",
            with("path = \"/api\"", "path = \"/api\"\nmethods = [\"GE T\"]"),
            "route[0].methods",
        ),
        (
            "unknown auth mode",
            with("path = \"/other\"", "path = \"/other\"\nauth = \"maybe\""),
            "route[1].auth",
        ),
        (
            "upstream with a query",
            with(
                "http://api.internal:8080\"",
                "http://api.internal:8080/?a=1\"",
            ),
            "route[0].upstream",
        ),
        (
            "zero route body limit",
            with("path = \"/api\"", "path = \"/api\"\nmax_body_bytes = 0"),
            "route[0].max_body_bytes",
        ),
        (
            "zero timeout",
            with("path = \"/api\"", "path = \"/api\"\ntimeout = \"0s\""),
            "route[0].timeout",
        ),
        // session.revalidate_every
        (
            "revalidate_every of 0s",
            with("keys = [", "revalidate_every = \"0s\"\nkeys = ["),
            "session.revalidate_every",
        ),
        (
            "revalidate_every not a duration",
            with("keys = [", "revalidate_every = \"sometimes\"\nkeys = ["),
            "session.revalidate_every",
        ),
        // token = "client"
        (
            "client token without client_scopes",
            with_all(&[
                ("client_id = \"bff\"", "client_id = \"bff\"\nclient_secret = \"s\""),
                ("path = \"/api\"", "path = \"/api\"\ntoken = \"client\""),
            ]),
            "route[0].client_scopes",
        ),
        (
            "client token with a scope holding a space",
            with_all(&[
                ("client_id = \"bff\"", "client_id = \"bff\"\nclient_secret = \"s\""),
                ("path = \"/api\"", "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"a b\"]"),
            ]),
            "route[0].client_scopes",
        ),
        (
            "client token on a public route",
            with_all(&[
                ("client_id = \"bff\"", "client_id = \"bff\"\nclient_secret = \"s\""),
                ("path = \"/api\"", "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"a\"]\nauth = \"public\""),
            ]),
            "route[0].auth",
        ),
        (
            "client token on an optional route",
            with_all(&[
                ("client_id = \"bff\"", "client_id = \"bff\"\nclient_secret = \"s\""),
                ("path = \"/api\"", "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"a\"]\nauth = \"optional\""),
            ]),
            "route[0].auth",
        ),
        (
            "client token without a client secret",
            with("path = \"/api\"", "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"a\"]"),
            "provider.machine.client_secret",
        ),
        (
            "client token with a fragment resource",
            with_all(&[
                ("client_id = \"bff\"", "client_id = \"bff\"\nclient_secret = \"s\""),
                ("path = \"/api\"", "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"a\"]\nclient_resource = \"https://x.example/#f\""),
            ]),
            "route[0].client_resource",
        ),
        (
            "client_scopes on an access-token route",
            with("path = \"/api\"", "path = \"/api\"\nclient_scopes = [\"a\"]"),
            "route[0].client_scopes",
        ),
        (
            "machine client with an empty id",
            format!("{}\n[provider.machine]\nclient_id = \"\"\nclient_secret = \"s\"\n", base()),
            "provider.machine.client_id",
        ),
        (
            "machine client_secret and client_secret_file",
            format!("{}\n[provider.machine]\nclient_id = \"m\"\nclient_secret = \"s\"\nclient_secret_file = \"x\"\n", base()),
            "provider.machine.client_secret_file",
        ),
        // [spa]
        (
            "spa with dir and upstream",
            format!(
                "{}\n[spa]\ndir = \"dist\"\nupstream = \"http://127.0.0.1:5173\"\n",
                base()
            ),
            "spa",
        ),
        ("empty spa", format!("{}\n[spa]\n", base()), "spa"),
    ];
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (name, toml, key) in &cases {
        let found = match load_from_str(toml) {
            Ok(_) => {
                failures.push(format!("{name}: accepted"));
                continue;
            }
            Err(e) => e.problems(),
        };
        if !found.iter().any(|p| p.key == *key) {
            failures.push(format!("{name}: want key {key}, got {found:?}"));
            continue;
        }
        for p in &found {
            assert_readable(p);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn unknown_key_messages_list_the_valid_keys() {
    let p = problems(&with("public_url", "lisen = \"0.0.0.0:8080\"\npublic_url"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "server.lisen");
    assert!(p[0].message.contains("listen"), "{}", p[0].message);
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml = with("https://app.example.com\"", "https://app.example.com/app\"")
        .replacen(KEY_A, "c2hvcnQ", 1)
        .replacen("path = \"/other\"", "path = \"other\"", 1);
    let p = problems(&toml);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["server.public_url", "session.keys[0]", "route[1].path"],
        "{p:?}"
    );
    for problem in &p {
        assert_readable(problem);
    }
}

#[test]
fn secrets_are_read_from_files() {
    let keys = temp_file("keys", &format!("# newest first\n{KEY_B}\n\n{KEY_A}\n"));
    let secret = temp_file("client-secret", "  s3cret-from-file\n");
    let toml = with(
        &format!("keys = [\"{KEY_A}\"]"),
        &format!("keys_file = {:?}", keys.display().to_string()),
    )
    .replacen(
        "client_id = \"bff\"",
        &format!(
            "client_id = \"bff\"\nclient_secret_file = {:?}",
            secret.display().to_string()
        ),
        1,
    );
    let c = load_from_str(&toml).unwrap_or_else(|e| panic!("{e}"));
    let loaded: Vec<&str> = c.session.keys.iter().map(Secret::expose).collect();
    assert_eq!(loaded, [KEY_B, KEY_A]);
    assert_eq!(
        c.provider.client_secret.as_ref().map(Secret::expose),
        Some("s3cret-from-file")
    );

    let empty = temp_file("empty-keys", "# nothing here\n\n");
    let p = problems(&with(
        &format!("keys = [\"{KEY_A}\"]"),
        &format!("keys_file = {:?}", empty.display().to_string()),
    ));
    assert!(p.iter().any(|p| p.key == "session.keys_file"), "{p:?}");

    for path in [keys, secret, empty] {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[test]
fn loopback_http_and_cognito_are_accepted() {
    for host in [
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:8080",
    ] {
        let c = load_from_str(&with("https://app.example.com", host))
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert!(!c.is_https());
    }
    let c = load_from_str(&with(
        "issuer = \"https://idp.example.com\"",
        r#"cognito = { region = "eu-west-1", user_pool_id = "eu-west-1_AbC123", domain = "x.auth.eu-west-1.amazoncognito.com" }"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.provider.cognito.is_some() && c.provider.issuer.is_none());
    let c = load_from_str(&with(
        "issuer = \"https://",
        "insecure_allow_http = true\nissuer = \"http://",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.provider.insecure_allow_http);
}

#[test]
fn redacted_toml_shows_no_secret() {
    let toml = with(
        &format!("keys = [\"{KEY_A}\"]"),
        &format!(
            "keys = [\"{KEY_A}\", \"{KEY_B}\"]\nredis_url = \"redis://:redis-pw-42@redis:6379\""
        ),
    )
    .replacen(
        "client_id = \"bff\"",
        "client_id = \"bff\"\nclient_secret = \"client-s3cret-value\"",
        1,
    );
    let c = load_from_str(&toml).unwrap_or_else(|e| panic!("{e}"));
    let out = c.to_redacted_toml();
    for secret in [KEY_A, KEY_B, "client-s3cret-value", "redis-pw-42"] {
        assert!(!out.contains(secret), "{secret} in:\n{out}");
    }
    assert!(out.contains("[redacted]"), "{out}");
    assert!(
        out.contains("client_id = \"bff\""),
        "non-secrets are shown:\n{out}"
    );
    // And it is itself TOML: an operator can read it back.
    toml::from_str::<toml::Table>(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert!(
        !format!("{c:?}").contains("client-s3cret-value"),
        "Debug leaks the client secret"
    );
}

#[test]
fn leeway_is_bounded() {
    // `exp + leeway < now` with a leeway of years never holds: every token the
    // provider ever signed stays good, and `iat` a year ahead passes too.
    let c = with(
        "client_id = \"bff\"",
        "client_id = \"bff\"\nleeway = \"3650days\"",
    );
    let p = problems(&c);
    assert!(p.iter().any(|p| p.key == "provider.leeway"), "{p:?}");
    let ok = with(
        "client_id = \"bff\"",
        "client_id = \"bff\"\nleeway = \"5m\"",
    );
    load_from_str(&ok).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn revalidation_and_machine_clients_parse() {
    // Off by default, "off" as well, a duration otherwise; shown back as written.
    let c = load_from_str(&base()).unwrap();
    assert_eq!(c.session.revalidate_every, None);
    let c = load_from_str(&with("keys = [", "revalidate_every = \"off\"\nkeys = [")).unwrap();
    assert_eq!(c.session.revalidate_every, None);
    let c = load_from_str(&with("keys = [", "revalidate_every = \"5m\"\nkeys = [")).unwrap();
    assert_eq!(c.session.revalidate_every, Some(Duration::from_secs(300)));
    assert!(c.to_redacted_toml().contains("revalidate_every = \"5m\""));
    // A machine client of its own (Cognito), or else the gateway's own.
    let toml = with_all(&[
        (
            "client_id = \"bff\"",
            "client_id = \"bff\"\nclient_secret = \"own\"",
        ),
        (
            "path = \"/api\"",
            "path = \"/api\"\ntoken = \"client\"\nclient_scopes = [\"orders/read\"]",
        ),
    ]);
    let c = load_from_str(&toml).unwrap();
    let (id, secret, method) = c.provider.machine_client();
    assert_eq!((id.as_str(), secret.unwrap().expose()), ("bff", "own"));
    assert_eq!(method, TokenEndpointAuth::ClientSecretBasic);
    let c = load_from_str(&format!(
        "{toml}\n[provider.machine]\nclient_id = \"m2m\"\nclient_secret = \"machine-s3cret\"\ntoken_endpoint_auth = \"client_secret_post\"\n"
    ))
    .unwrap();
    let (id, secret, method) = c.provider.machine_client();
    assert_eq!(
        (id.as_str(), secret.unwrap().expose()),
        ("m2m", "machine-s3cret")
    );
    assert_eq!(method, TokenEndpointAuth::ClientSecretPost);
    assert!(!c.to_redacted_toml().contains("machine-s3cret"));
}

#[test]
fn admin_token_file_is_read_trimmed_and_must_be_strong() {
    let token = "0123456789abcdef0123456789abcdef";
    let with_token_file = |path: &std::path::Path| {
        with(
            "public_url = \"https://app.example.com\"",
            &format!(
                "public_url = \"https://app.example.com\"\nadmin_token_file = {:?}",
                path.display().to_string()
            ),
        )
    };
    // Editors and `kubectl create secret --from-file` leave a final newline.
    let good = temp_file("admin-token", &format!("{token}\n"));
    let c = load_from_str(&with_token_file(&good)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.server.admin_token.as_ref().map(Secret::expose),
        Some(token)
    );
    assert!(
        !format!("{c:?}").contains(token),
        "the token shows in the config's Debug"
    );
    assert!(load_from_str(&base()).unwrap().server.admin_token.is_none());

    let missing = std::env::temp_dir()
        .join(format!("oidc-bff-missing-{}", uuid::Uuid::new_v4()))
        .join("admin-token");
    let empty = temp_file("admin-empty", "\n");
    let short = temp_file("admin-short", &format!("{}\n", &token[..31]));
    let spaced = temp_file("admin-spaced", "0123456789abcdef 0123456789abcdef");
    let unicode = temp_file("admin-unicode", &"é".repeat(20));
    for (what, path, says) in [
        ("missing", &missing, "cannot read"),
        ("empty", &empty, "empty"),
        ("31 bytes", &short, "too short"),
        ("a space inside", &spaced, "visible ASCII"),
        ("not ASCII", &unicode, "visible ASCII"),
    ] {
        let p = problems(&with_token_file(path));
        let problem = p
            .iter()
            .find(|p| p.key == "server.admin_token_file")
            .unwrap_or_else(|| panic!("{what}: not refused by key: {p:?}"));
        assert!(problem.message.contains(says), "{what}: {problem}");
        assert_readable(problem);
        assert!(!problem.message.contains(&token[..31]), "{what}: {problem}");
    }
    // Not settable inline: a token belongs in a file (a Secret), not the config.
    let p = problems(&with(
        "public_url = \"https://app.example.com\"",
        &format!("public_url = \"https://app.example.com\"\nadmin_token = \"{token}\""),
    ));
    assert!(p.iter().any(|p| p.key == "server.admin_token"), "{p:?}");
    for path in [good, empty, short, spaced, unicode] {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
