//! Loading, second half: the files a config names are read here, relative to
//! the config file, before validation looks at anything: `*_file` secrets
//! (client secret, session keys, Redis password, admin token), the CA bundles, the
//! assertion key and the SPA directory. Validation itself reads nothing.

use super::{Config, Problem, Secret};
use std::path::Path;

/// Reads every file `config` names into place; paths become absolute.
pub fn read_files(c: &mut Config, base: &Path) -> Vec<Problem> {
    let mut p = Vec::new();
    let server = &mut c.server;
    if let Some(path) = &mut server.assertion_key_file {
        *path = base.join(&*path);
        match std::fs::read_to_string(&*path) {
            Ok(pem) => server.assertion_key_pem = Some(Secret::new(pem)),
            Err(e) => p.push(cannot_read("server.assertion_key_file", path, e)),
        }
    }
    if let Some(path) = &mut server.admin_token_file {
        *path = base.join(&*path);
        match secret_file(base, path) {
            Ok(t) if t.is_empty() => {
                p.push(Problem::new("server.admin_token_file", "the file is empty"))
            }
            Ok(t) => server.admin_token = Some(Secret::new(t)),
            Err(e) => p.push(Problem::new("server.admin_token_file", e)),
        }
    }
    if let Some(path) = &mut server.upstream_ca_file {
        *path = base.join(&*path);
        match std::fs::read(&*path) {
            Ok(pem) => server.upstream_ca_pem = Some(pem),
            Err(e) => p.push(cannot_read("server.upstream_ca_file", path, e)),
        }
    }

    let pc = &mut c.provider;
    match (&pc.client_secret, &pc.client_secret_file) {
        (Some(_), Some(_)) => p.push(Problem::new(
            "provider.client_secret_file",
            "set only one of client_secret and client_secret_file",
        )),
        (None, Some(path)) => match secret_file(base, path) {
            Ok(s) if s.is_empty() => p.push(Problem::new(
                "provider.client_secret_file",
                "the file is empty",
            )),
            Ok(s) => pc.client_secret = Some(Secret::new(s)),
            Err(e) => p.push(Problem::new("provider.client_secret_file", e)),
        },
        _ => {}
    }

    let s = &mut c.session;
    match (s.keys.is_empty(), &s.keys_file) {
        (false, Some(_)) => p.push(Problem::new(
            "session.keys_file",
            "set only one of keys and keys_file",
        )),
        (true, Some(path)) => match secret_file(base, path) {
            Ok(text) => {
                s.keys = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new)
                    .collect();
                if s.keys.is_empty() {
                    p.push(Problem::new("session.keys_file", "holds no key"));
                }
            }
            Err(e) => p.push(Problem::new("session.keys_file", e)),
        },
        _ => {}
    }
    if s.redis_password.is_some() && s.redis_password_file.is_some() {
        p.push(Problem::new(
            "session.redis_password_file",
            "set only one of redis_password and redis_password_file",
        ));
    } else if let Some(path) = &s.redis_password_file {
        match secret_file(base, path) {
            Ok(pw) if pw.is_empty() => {
                p.push(Problem::new("session.redis_password_file", "is empty"))
            }
            Ok(pw) => s.redis_password = Some(Secret::new(pw)),
            Err(e) => p.push(Problem::new("session.redis_password_file", e)),
        }
    }
    if let Some(path) = &mut s.redis_ca_file {
        *path = base.join(&*path);
        match std::fs::read(&*path) {
            Ok(pem) => s.redis_ca_pem = Some(pem),
            Err(e) => p.push(cannot_read("session.redis_ca_file", path, e)),
        }
    }

    if let Some(dir) = c.spa.as_mut().and_then(|spa| spa.dir.as_mut()) {
        *dir = base.join(&*dir);
        if !dir.join("index.html").is_file() {
            p.push(Problem::new(
                "spa.dir",
                format!("{} has no index.html", dir.display()),
            ));
        }
    }
    p
}

fn cannot_read(key: &str, path: &Path, e: std::io::Error) -> Problem {
    Problem::new(key, format!("cannot read {}: {e}", path.display()))
}

/// A secret file's text, trimmed (editors add a final newline).
fn secret_file(base: &Path, path: &Path) -> Result<String, String> {
    let full = base.join(path);
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", full.display()))
}
