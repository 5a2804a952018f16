//! The `oidc-bff` binary's command line: `check-config` (exit codes, one
//! `key: what is wrong` line per problem, no secret in the output) and
//! `generate-key`. Each test runs the built binary as a child process with a
//! clean `OIDC_BFF*` environment, so nothing set elsewhere leaks in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_oidc-bff");
const EXAMPLE: &str = "config/oidc-bff.example.toml";
/// The placeholder key the example config ships with.
const EXAMPLE_KEY: &str = "EXAMPLE-ONLY-replace-me-with-generate-key00";

/// `oidc-bff <args>` from the repository root, with `env` as the only
/// `OIDC_BFF*` variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OIDC_BFF") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("cannot run the oidc-bff binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory no other test (or run) uses; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "oidc-bff-cli-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key() -> String {
    B64.encode([7u8; 32])
}

/// A valid config, for the tests to break one way or another.
fn valid_config() -> String {
    format!(
        r#"[server]
public_url = "https://app.example.com"

[provider]
issuer = "https://idp.example.com"
client_id = "bff"

[session]
keys = ["{}"]

[[route]]
path = "/api"
upstream = "http://127.0.0.1:9"
"#,
        key()
    )
}

fn check_config(path: &Path, env: &[(&str, &str)]) -> Output {
    run(&["check-config", "--config", path.to_str().unwrap()], env)
}

/// The problem lines of a failed `check-config` (after its header line).
fn problem_lines(o: &Output) -> Vec<String> {
    let err = stderr(o);
    let mut lines = err.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.ends_with("invalid configuration"),
        "header line: {header:?}\n{err}"
    );
    lines.map(str::to_string).collect()
}

/// Every problem line reads `key: what is wrong`.
fn assert_problem_lines(lines: &[String]) {
    let shape =
        regex::Regex::new(r"^[a-z_]+(\[[0-9]+\])?(\.[a-z_]+(\[[0-9]+\])?)*: [^ ].*[^ ]$").unwrap();
    assert!(!lines.is_empty(), "no problem listed");
    for l in lines {
        assert!(shape.is_match(l), "not `key: what is wrong`: {l:?}");
    }
}

#[test]
fn check_config_accepts_the_example_and_prints_no_secret() {
    let secret = "client-secret-from-env-7d1f";
    let o = run(
        &["check-config", "--config", EXAMPLE],
        &[("OIDC_BFF__PROVIDER__CLIENT_SECRET", secret)],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let all = format!("{out}{}", stderr(&o));
    for s in [EXAMPLE_KEY, secret] {
        assert!(!all.contains(s), "secret {s:?} printed:\n{all}");
    }
    assert!(out.contains("[redacted]"), "{out}");
    // The effective config is printed, as TOML (after a `# … ok` comment line).
    let config: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(
        config["provider"]["client_secret"].as_str(),
        Some("[redacted]"),
        "{out}"
    );
    assert_eq!(
        config["session"]["keys"][0].as_str(),
        Some("[redacted]"),
        "{out}"
    );
    assert_eq!(
        config["server"]["public_url"].as_str(),
        Some("https://app.example.com/"),
        "{out}"
    );
}

#[test]
fn check_config_names_a_typo_d_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "typo.toml",
        &valid_config().replacen("[server]\n", "[server]\nlisen = \"0.0.0.0:8080\"\n", 1),
    );
    let o = check_config(&path, &[]);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(&o));
    let lines = problem_lines(&o);
    assert!(
        lines.iter().any(|l| l.starts_with("server.lisen: ")),
        "{lines:?}"
    );
    assert_problem_lines(&lines);
    assert!(
        stdout(&o).is_empty(),
        "nothing on stdout when invalid: {}",
        stdout(&o)
    );
}

#[test]
fn check_config_lists_every_problem_on_its_own_line() {
    let dir = TempDir::new();
    let broken = valid_config()
        .replacen("https://app.example.com", "https://app.example.com/app", 1)
        .replacen(&key(), "c2hvcnQ", 1)
        .replacen("path = \"/api\"", "path = \"api\"", 1);
    let path = dir.write("broken.toml", &broken);
    let o = check_config(&path, &[]);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(&o));
    let lines = problem_lines(&o);
    assert_problem_lines(&lines);
    for key in ["server.public_url", "session.keys[0]", "route[0].path"] {
        let prefix = format!("{key}: ");
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "{key} in {lines:?}"
        );
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
}

#[test]
fn check_config_applies_environment_overrides() {
    let dir = TempDir::new();
    let path = dir.write("valid.toml", &valid_config());
    let ok = check_config(&path, &[]);
    assert_eq!(ok.status.code(), Some(0), "stderr:\n{}", stderr(&ok));

    let o = check_config(&path, &[("OIDC_BFF__SESSION__STORE", "bogus")]);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(&o));
    let lines = problem_lines(&o);
    assert!(
        lines.iter().any(|l| l.starts_with("session.store: ")),
        "{lines:?}"
    );
    assert_problem_lines(&lines);
}

#[test]
fn check_config_applies_a_valid_environment_override() {
    let dir = TempDir::new();
    let path = dir.write("valid.toml", &valid_config());
    let o = check_config(&path, &[("OIDC_BFF__SESSION__MAX_SESSIONS", "1234")]);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    let out = stdout(&o);
    let config: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(
        config["session"]["max_sessions"].as_integer(),
        Some(1234),
        "{out}"
    );
    assert_eq!(
        config["server"]["public_url"].as_str(),
        Some("https://app.example.com/"),
        "the file still applies: {out}"
    );
    // Without the variable, the default (so 1234 came from the environment).
    let o = check_config(&path, &[]);
    let out = stdout(&o);
    let config: toml::Table = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_ne!(config["session"]["max_sessions"].as_integer(), Some(1234));
}

#[test]
fn check_config_reports_a_missing_file() {
    let dir = TempDir::new();
    let o = check_config(&dir.0.join("nope.toml"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("nope.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn generate_key_prints_a_fresh_32_byte_key() {
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let o = run(&["generate-key"], &[]);
            assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
            let out = stdout(&o);
            assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
            out.trim().to_string()
        })
        .collect();
    for k in &keys {
        assert_eq!(k.len(), 43, "{k}");
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{k}"
        );
        assert_eq!(B64.decode(k).expect("base64url").len(), 32, "{k}");
    }
    assert_ne!(keys[0], keys[1], "two runs gave the same key");
}
