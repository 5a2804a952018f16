//! Fixes from an outside attack report, each refusal checked by its status
//! and by what did not happen (no upstream request, no session, no secret in
//! the body), each next to a control that passes through the same path:
//! SPA hosting confined to its directory (no dotfiles, no symlinks out, no
//! listings, percent-encoded spellings).

use crate::harness::*;
use crate::negative::{rogue_stack, Rogue};
use std::os::unix::fs::symlink;
use std::time::Duration;

const INDEX: &str = "<!doctype html><title>app</title><div id=app></div>";
const APP_JS: &str = "console.log('app')";
/// Every file the SPA must never serve holds this.
const SECRET: &str = "SECRET-must-not-be-served";

/// `[spa] dir` for `dir`, on the usual rogue stack (whose `/api/` upstream
/// must see nothing of any of this).
async fn spa_stack(dir: &ScratchDir) -> Rogue {
    rogue_stack(&format!("[spa]\ndir = \"{}\"\n", dir.0.display())).await
}

/// GET (or HEAD) with optional extra headers; status and body.
async fn fetch(gw: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{gw}{path}"),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// GET with `target` as the raw request target: HTTP clients would resolve
/// `%2e%2e` and `..` before sending (WHATWG URL). Status and whole answer.
async fn raw_get(gw: &str, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("the gateway answered")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn dotfile_tree() -> ScratchDir {
    let dir = ScratchDir::new("spa-dot");
    dir.write("index.html", INDEX);
    for d in [".git", "sub", ".well-known", "emptydir", ".hidden-dir"] {
        std::fs::create_dir_all(dir.0.join(d)).unwrap();
    }
    dir.write(".env", SECRET);
    dir.write(".git/config", SECRET);
    dir.write(".git/HEAD", SECRET);
    dir.write("sub/.hidden", SECRET);
    dir.write("sub/page.txt", "a page");
    dir.write(".hidden-dir/index.html", SECRET);
    dir.write(".hidden-dir/file.txt", SECRET);
    dir.write(".well-known/x", "well-known x");
    dir.write(".well-known/.y", SECRET);
    dir.write("emptydir/data.json", "{}");
    dir
}

#[tokio::test]
async fn spa_serves_no_dotfile_and_no_dot_directory() {
    let dir = dotfile_tree();
    let s = spa_stack(&dir).await;
    let refused = [
        "/.env",
        "/.git/config",
        "/.git/HEAD",
        "/.git/",
        "/.git",
        "/.hidden-dir/",
        "/.hidden-dir/file.txt",
        "/sub/.hidden",
        "/.well-known/.y",
    ];
    for path in refused {
        for method in ["GET", "HEAD"] {
            let (status, body) = fetch(&s.gw.url, method, path, &[]).await;
            assert_eq!(status, 404, "{method} {path}");
            assert!(!body.contains(SECRET), "{method} {path}: {body}");
            assert!(!body.contains(INDEX), "{method} {path}: not even the app");
        }
    }
    // Percent-encoded spellings (ServeDir would decode them) and `..`: the
    // gateway refuses them before the SPA (the SPA's own check, which holds
    // without it, is tested in src/proxy/spa.rs).
    for path in [
        "/%2eenv",
        "/%2Eenv",
        "/%2egit/config",
        "/.git%2fconfig",
        "/sub/%2ehidden",
        "/sub%2f.hidden",
        "/a/%2e%2e/.env",
        "/a/%2e%2e/%2eenv",
        "/sub/..%2f.git/config",
        "/sub/../.env",
        "/./.env",
        "//.env",
    ] {
        let (status, answer) = raw_get(&s.gw.url, path).await;
        assert_eq!(status, 400, "{path}");
        assert!(!answer.contains(SECRET), "{path}: {answer}");
    }
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");

    // Controls: the same tree's other files are served.
    for (path, want) in [
        ("/", INDEX),
        ("/index.html", INDEX),
        ("/sub/page.txt", "a page"),
        ("/.well-known/x", "well-known x"),
        // Deep links get the app.
        ("/orders/42", INDEX),
        ("/sub/profile", INDEX),
    ] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
    // A directory without index.html is the app (a client route), never a listing.
    let (status, body) = fetch(&s.gw.url, "GET", "/emptydir/", &[]).await;
    assert_eq!((status, body.as_str()), (200, INDEX), "/emptydir/");
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn spa_follows_no_symlink_out_of_its_directory() {
    let outside = ScratchDir::new("spa-outside");
    outside.write("secret.txt", SECRET);
    outside.write("index.html", SECRET);
    let dir = ScratchDir::new("spa-links");
    dir.write("index.html", INDEX);
    dir.write(".env", SECRET);
    std::fs::create_dir_all(dir.0.join("assets")).unwrap();
    dir.write("assets/app.js", APP_JS);
    let link = |target: &std::path::Path, name: &str| symlink(target, dir.0.join(name)).unwrap();
    // Out of the directory: a file, a directory, precompressed twins.
    link(&outside.0.join("secret.txt"), "passwd.txt");
    link(&outside.0, "outdir");
    link(&outside.0.join("secret.txt"), "assets/app.js.br");
    link(&outside.0.join("secret.txt"), "index.html.gz");
    // Inside, but onto a dotfile.
    link(std::path::Path::new(".env"), "env.txt");
    // Inside: followed.
    link(std::path::Path::new("assets/app.js"), "alias.js");
    link(std::path::Path::new("assets"), "static");
    let s = spa_stack(&dir).await;

    for (method, path) in [
        ("GET", "/passwd.txt"),
        ("HEAD", "/passwd.txt"),
        ("GET", "/outdir/secret.txt"),
        ("HEAD", "/outdir/secret.txt"),
        ("GET", "/outdir/index.html"),
        ("GET", "/env.txt"),
        ("GET", "/%70asswd.txt"),
    ] {
        let (status, body) = fetch(&s.gw.url, method, path, &[]).await;
        assert_eq!(status, 404, "{method} {path}");
        assert!(!body.contains(SECRET), "{method} {path}: {body}");
    }
    let (status, answer) = raw_get(&s.gw.url, "/outdir%2fsecret.txt").await;
    assert_eq!(status, 400, "refused by the gateway before the SPA");
    assert!(!answer.contains(SECRET));
    // A symlinked directory out is a missing directory: the app for a
    // client route, never the target's index.html or a listing.
    for path in ["/outdir/", "/outdir"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, INDEX), "{path}");
    }
    // A precompressed twin that leads out is skipped: the plain file is served.
    let r = reqwest::Client::new()
        .get(format!("{}/assets/app.js", s.gw.url))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.unwrap(), APP_JS);
    // So is the deep-link index.html's.
    for path in ["/", "/orders/42"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[("accept-encoding", "gzip")]).await;
        assert_eq!((status, body.as_str()), (200, INDEX), "{path}");
    }
    assert_eq!(s.upstream.count(), 0, "nothing reached the upstream");

    // Controls: symlinks that stay inside are followed.
    for path in ["/alias.js", "/static/app.js", "/assets/app.js"] {
        let (status, body) = fetch(&s.gw.url, "GET", path, &[]).await;
        assert_eq!((status, body.as_str()), (200, APP_JS), "{path}");
    }
}
