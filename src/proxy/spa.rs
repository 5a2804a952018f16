//! The single-page app's files: served from `[spa] dir` with `index.html` for
//! client-side routes (deep links), precompressed `.br`/`.gz` variants when
//! present, validators (ETag, Last-Modified) and 304s, long-lived caching for
//! content-hashed assets and revalidation for everything else, plus the
//! configured security headers.
//!
//! Only the app is served, never what happens to lie next to it:
//!
//! - **No dotfiles or dot-directories**: a path any segment of which starts
//!   with `.` (`/.env`, `/.git/config`, `/sub/.hidden`, and `.` / `..`) is 404
//!   without a look at the disk and never gets the app as a deep link, except
//!   a first segment `.well-known` (RFC 8615 §3 puts well-known URIs at the
//!   root, and nowhere else). The path is judged percent-decoded, as the file
//!   system sees it (RFC 3986 §2.1): `/%2eenv` is `/.env`.
//! - **Nothing outside `dir`**: the directory is resolved
//!   (`canonicalize`) once, at start; then every file the server touches —
//!   the requested file, its `.br`/`.gz` twin, a directory's `index.html`
//!   and the deep-link `index.html` — is resolved too, and used only when it
//!   really lies inside the directory and no segment of its path there
//!   starts with `.`. Symlinks that stay inside are followed (deploy tools
//!   link shared or renamed assets); one that leads out, or onto a dotfile,
//!   is a missing file, so the answer (404, or the app for a deep link) says
//!   nothing about what is behind it. If `dir` itself is a symlink a deploy
//!   flips, the new target is served from the next start.
//! - **Only regular files**, opened by their resolved path; on Linux the
//!   descriptor's own path (`/proc/self/fd`) is checked again after the
//!   open, so a directory swapped for a symlink between the check and the
//!   open is caught too.
//! - **No directory listings**: a directory is its `index.html`, else missing.

use crate::config::SpaConfig;
use crate::error::AppError;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower::ServiceExt;
use tower_http::services::fs::{Backend, DefaultServeDirFallback, File as ServedFile};
use tower_http::services::ServeDir;

/// The app's directory and ready-made response headers for its files.
#[derive(Debug, Clone)]
pub struct Spa {
    files: ServeDir<DefaultServeDirFallback, Confined>,
    security: Vec<(header::HeaderName, HeaderValue)>,
}

impl Spa {
    /// Fails when `dir` cannot be resolved (it must exist: config validation
    /// checked it holds an `index.html`).
    pub fn new(dir: PathBuf, cfg: &SpaConfig, https: bool) -> io::Result<Self> {
        let mut security = vec![(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )];
        if let Ok(v) = HeaderValue::from_str(&cfg.referrer_policy) {
            security.push((header::REFERRER_POLICY, v));
        }
        if let Some(v) = cfg
            .content_security_policy
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            security.push((header::CONTENT_SECURITY_POLICY, v));
        }
        if https && cfg.hsts {
            security.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        let root: Arc<Path> = std::fs::canonicalize(&dir)?.into();
        let files = ServeDir::with_backend(&root, Confined { root: root.clone() })
            .precompressed_br()
            .precompressed_gzip()
            .append_index_html_on_directories(true);
        Ok(Spa { files, security })
    }

    pub async fn serve(&self, req: Request) -> Result<Response, AppError> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Err(AppError::MethodNotAllowed);
        }
        let path = req.uri().path().to_string();
        // Decided on the path alone, before the disk: no existence oracle.
        if !request_visible(&path) {
            return Err(AppError::NotFound);
        }
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let (parts, _) = req.into_parts();
        let mut resp = self
            .files
            .clone()
            .oneshot(Request::from_parts(parts.clone(), Body::empty()))
            .await
            .map_err(|e| AppError::Internal(format!("static files: {e}")))?;
        // A deep link to a client-side route gets the app; a missing file does
        // not. The app is fetched through the same confined directory.
        if resp.status() == StatusCode::NOT_FOUND && is_client_route(&path) {
            let mut index = parts;
            index.uri = Uri::from_static("/index.html");
            resp = self
                .files
                .clone()
                .oneshot(Request::from_parts(index, Body::empty()))
                .await
                .map_err(|e| AppError::Internal(format!("static files: {e}")))?;
        }
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(AppError::NotFound);
        }
        let mut resp = resp.map(Body::new);
        finish(&mut resp, &path, &self.security);
        if resp.status() == StatusCode::OK && etag_matches(if_none_match.as_ref(), resp.headers()) {
            // RFC 9110 §15.4.5: 304 keeps the validators and caching headers, drops the body.
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::ETAG,
                header::CACHE_CONTROL,
                header::LAST_MODIFIED,
                header::VARY,
            ] {
                if let Some(v) = resp.headers().get(&name) {
                    not_modified.headers_mut().insert(name, v.clone());
                }
            }
            return Ok(not_modified);
        }
        Ok(resp)
    }
}

/// Whether a path inside the app's directory, given as its segments, may be
/// served: no segment starts with `.` (dotfiles, dot-directories, `.` and
/// `..`), except a first `.well-known` (RFC 8615 §3: only at the root).
pub fn visible<S: AsRef<[u8]>>(segments: impl IntoIterator<Item = S>) -> bool {
    segments.into_iter().enumerate().all(|(i, s)| {
        let s = s.as_ref();
        s.first() != Some(&b'.') || (i == 0 && s == b".well-known")
    })
}

/// [`visible`] for a request path, percent-decoded as ServeDir decodes it
/// (RFC 3986 §2.1: `%2e` is `.`, `%2f` is `/`). A path that is not UTF-8
/// once decoded names no file ServeDir would open: refused as well. Empty
/// segments (`//`) are skipped, as path components skip them; `\` splits
/// too, as it does for Windows paths.
pub fn request_visible(uri_path: &str) -> bool {
    match percent_encoding::percent_decode_str(uri_path).decode_utf8() {
        Ok(decoded) => visible(decoded.split(['/', '\\']).filter(|s| !s.is_empty())),
        Err(_) => false,
    }
}

/// [`visible`] for a relative file-system path; anything but plain names
/// (a root, a prefix, `..`) is refused.
fn relative_visible(rel: &Path) -> bool {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => names.push(name.as_encoded_bytes()),
            Component::CurDir => {}
            _ => return false,
        }
    }
    visible(names)
}

fn missing() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

/// The file `path` (built by ServeDir under `root`, the canonical directory)
/// really is, when it may be served: resolved through every symlink, inside
/// `root`, and visible both as asked and as resolved. Anything else, an
/// unresolvable path included (missing, a symlink loop), is "not found".
pub fn confine(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let asked = path.strip_prefix(root).map_err(|_| missing())?;
    if !relative_visible(asked) {
        return Err(missing());
    }
    let real = std::fs::canonicalize(path).map_err(|_| missing())?;
    match real.strip_prefix(root) {
        Ok(rel) if relative_visible(rel) => Ok(real),
        _ => Err(missing()),
    }
}

/// Opens a confined regular file by its resolved path.
fn open_confined(root: &Path, path: &Path) -> io::Result<std::fs::File> {
    let real = confine(root, path)?;
    // A FIFO or a device would block the open or never end.
    if !std::fs::metadata(&real)?.is_file() {
        return Err(missing());
    }
    let file = std::fs::File::open(&real)?;
    if !file.metadata()?.is_file() {
        return Err(missing());
    }
    opened_inside(root, &file)?;
    Ok(file)
}

/// The path the kernel actually opened, read back from the descriptor, must
/// still be inside and visible: catches a component replaced by a symlink
/// between [`confine`] and the open.
#[cfg(target_os = "linux")]
fn opened_inside(root: &Path, file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(real) if real.strip_prefix(root).is_ok_and(relative_visible) => Ok(()),
        Ok(_) => Err(missing()),
        // No /proc (some sandboxes): the check before the open stands alone.
        Err(_) => Ok(()),
    }
}

#[cfg(not(target_os = "linux"))]
fn opened_inside(_root: &Path, _file: &std::fs::File) -> io::Result<()> {
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// ServeDir's file system, confined to the canonical app directory: every
/// `metadata` and `open` it makes goes through [`confine`].
#[derive(Debug, Clone)]
pub struct Confined {
    root: Arc<Path>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl Backend for Confined {
    type File = SpaFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<SpaFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let root = self.root.clone();
        Box::pin(async move {
            let file = blocking(move || open_confined(&root, &path)).await?;
            Ok(SpaFile(tokio::fs::File::from_std(file)))
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let root = self.root.clone();
        Box::pin(blocking(move || std::fs::metadata(confine(&root, &path)?)))
    }
}

/// An opened app file.
#[derive(Debug)]
pub struct SpaFile(tokio::fs::File);

impl AsyncRead for SpaFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncSeek for SpaFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.0).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.0).poll_complete(cx)
    }
}

impl ServedFile for SpaFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> =
        Pin<Box<dyn Future<Output = io::Result<std::fs::Metadata>> + Send + 'a>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        Box::pin(self.0.metadata())
    }
}

/// Paths whose last segment has no file extension are the app's own routes.
pub fn is_client_route(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    !last.contains('.')
}

/// Build tools name assets after their content (`app-3f2a9c1b.js`,
/// `index.BTxd5cQ1.css`): such files never change and can be cached for a year.
pub fn is_hashed_asset(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let stem = match file.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem,
        _ => return false,
    };
    // The part after the last '-' or '.' of the stem: 8+ characters, letters
    // and digits mixed (a plain word like "vendor" is not a hash).
    let tail = stem.rsplit(['-', '.']).next().unwrap_or("");
    tail.len() >= 8
        && stem.len() > tail.len()
        && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tail.bytes().any(|b| b.is_ascii_digit())
}

fn finish(resp: &mut Response, path: &str, security: &[(header::HeaderName, HeaderValue)]) {
    let html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    let cache = if !html && is_hashed_asset(path) {
        "public, max-age=31536000, immutable"
    } else {
        // index.html and unhashed files: always revalidate (cheap with the ETag).
        "no-cache"
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(tag) = weak_etag(h) {
        h.insert(header::ETAG, tag);
    }
    for (name, value) in security {
        h.insert(name.clone(), value.clone());
    }
}

/// A weak validator from what identifies this representation: its size, its
/// modification time and its encoding (the `.br` and `.gz` variants differ).
fn weak_etag(h: &HeaderMap) -> Option<HeaderValue> {
    use sha2::{Digest, Sha256};
    let modified = h.get(header::LAST_MODIFIED)?.as_bytes();
    let len = h
        .get(header::CONTENT_LENGTH)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let enc = h
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let digest = Sha256::new()
        .chain_update(modified)
        .chain_update(b"|")
        .chain_update(len)
        .chain_update(b"|")
        .chain_update(enc)
        .finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("W/\"{hex}\"")).ok()
}

/// RFC 9110 §13.1.2: weak comparison; `*` matches any.
fn etag_matches(if_none_match: Option<&HeaderValue>, h: &HeaderMap) -> bool {
    let (Some(inm), Some(tag)) = (
        if_none_match.and_then(|v| v.to_str().ok()),
        h.get(header::ETAG).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_are_recognised() {
        for (path, want) in [
            ("/assets/index-BTxd5cQ1.js", true),
            ("/assets/app.3f2a9c1b.css", true),
            ("/static/js/main.8e5c2a41.chunk.js", false),
            ("/static/js/main.8e5c2a41.js", true),
            ("/assets/vendor-abcdefgh.js", false),
            ("/app.js", false),
            ("/index.html", false),
            ("/logo.png", false),
            ("/12345678.js", false),
            ("/assets/font-2a3b4c5d6e.woff2", true),
        ] {
            assert_eq!(is_hashed_asset(path), want, "{path}");
        }
    }

    #[test]
    fn client_routes_have_no_extension() {
        for (path, want) in [
            ("/", true),
            ("/profile", true),
            ("/orders/42", true),
            ("/app.js", false),
            ("/a/b.map", false),
        ] {
            assert_eq!(is_client_route(path), want, "{path}");
        }
    }

    #[test]
    fn dot_segments_are_hidden_except_a_root_well_known() {
        for (path, want) in [
            ("/", true),
            ("/index.html", true),
            ("/assets/app-3f2a9c1b.js", true),
            ("/orders/42", true),
            ("/a.b/c", true),
            ("/.well-known/security.txt", true),
            ("//.well-known/x", true),
            ("/.env", false),
            ("/.git/config", false),
            ("/.git/", false),
            ("/sub/.hidden", false),
            ("/sub/.well-known/x", false),
            ("/.well-known/.secret", false),
            ("/.Well-Known/x", false),
            ("/.", false),
            ("/..", false),
            ("/a/../.env", false),
            // Percent-encoded spellings are judged decoded (RFC 3986 §2.1).
            ("/%2eenv", false),
            ("/%2Eenv", false),
            ("/%2e%2e/etc/passwd", false),
            ("/a/%2e%2e/%2eenv", false),
            ("/.git%2fconfig", false),
            ("/sub%2f.hidden", false),
            ("/sub%5c.hidden", false),
            ("/%2ewell-known/x", true),
            ("/%252eenv", true), // a file literally named `%2eenv`
            ("/%ff", false),     // not UTF-8 once decoded
        ] {
            assert_eq!(request_visible(path), want, "{path}");
        }
    }

    /// A scratch tree: `root/` (the app) and `outside/` beside it.
    struct Tree(PathBuf);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn confine_resolves_symlinks_and_refuses_what_leaves_or_hides() {
        use std::os::unix::fs::symlink;
        let tree =
            Tree(std::env::temp_dir().join(format!("oidc-bff-spa-{}", uuid::Uuid::new_v4())));
        let (root, outside) = (tree.0.join("root"), tree.0.join("outside"));
        for d in [
            root.join("sub"),
            root.join(".git"),
            root.join(".well-known"),
            outside.clone(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            "index.html",
            "sub/ok.txt",
            ".env",
            ".git/config",
            ".well-known/x",
        ] {
            std::fs::write(root.join(f), f).unwrap();
        }
        std::fs::write(outside.join("secret.txt"), "secret").unwrap();
        symlink(outside.join("secret.txt"), root.join("out.txt")).unwrap();
        symlink(&outside, root.join("outdir")).unwrap();
        symlink("sub/ok.txt", root.join("alias.txt")).unwrap();
        symlink("sub", root.join("subalias")).unwrap();
        symlink(".env", root.join("env.txt")).unwrap();
        symlink("../root/sub/ok.txt", root.join("roundtrip.txt")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        for (rel, want) in [
            ("", Some("")),
            ("index.html", Some("index.html")),
            ("sub/ok.txt", Some("sub/ok.txt")),
            ("alias.txt", Some("sub/ok.txt")),
            ("subalias/ok.txt", Some("sub/ok.txt")),
            ("roundtrip.txt", Some("sub/ok.txt")),
            (".well-known/x", Some(".well-known/x")),
            ("missing.txt", None),
            (".env", None),
            (".git/config", None),
            ("env.txt", None),
            ("out.txt", None),
            ("outdir/secret.txt", None),
            ("outdir", None),
            ("loop", None),
            ("sub/../.env", None),
        ] {
            let got = confine(&root, &root.join(rel));
            match want {
                Some(real) => assert_eq!(got.unwrap(), root.join(real), "{rel}"),
                None => assert_eq!(got.unwrap_err().kind(), io::ErrorKind::NotFound, "{rel}"),
            }
        }
        // A path ServeDir did not build under the root is refused as well.
        assert!(confine(&root, &outside.join("secret.txt")).is_err());
        // Opening refuses directories (and anything else not a regular file).
        assert!(open_confined(&root, &root.join("sub")).is_err());
        assert!(open_confined(&root, &root.join("alias.txt")).is_ok());
    }

    /// `Spa::serve` on its own, without the gateway's path check in front
    /// (which refuses every `%2e`, `%2f` and `..` spelling with 400 first).
    #[tokio::test]
    async fn serve_refuses_hidden_paths_in_any_spelling_on_its_own() {
        let tree =
            Tree(std::env::temp_dir().join(format!("oidc-bff-spa-{}", uuid::Uuid::new_v4())));
        let root = tree.0.join("app");
        for d in [".git", ".well-known", "sub"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, body) in [
            ("index.html", "INDEX"),
            ("app.js", "APP"),
            (".env", "SECRET"),
            (".git/config", "SECRET"),
            ("sub/.hidden", "SECRET"),
            (".well-known/x", "WELL-KNOWN"),
        ] {
            std::fs::write(root.join(f), body).unwrap();
        }
        let cfg = SpaConfig {
            dir: Some(root.clone()),
            upstream: None,
            content_security_policy: None,
            referrer_policy: "no-referrer".into(),
            hsts: false,
        };
        let spa = Spa::new(root, &cfg, false).unwrap();
        let get = |uri: &'static str| {
            let spa = spa.clone();
            async move {
                let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
                match spa.serve(req).await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                        (status, String::from_utf8(body.to_vec()).unwrap())
                    }
                    Err(AppError::NotFound) => (404, String::new()),
                    Err(e) => panic!("{uri}: {e:?}"),
                }
            }
        };
        for uri in [
            "/.env",
            "/%2eenv",
            "/%2Eenv",
            "/.git/config",
            "/%2egit/config",
            "/.git%2fconfig",
            "/.git%2Fconfig",
            "/.git/",
            "/sub/.hidden",
            "/sub/%2ehidden",
            "/sub%2f.hidden",
            "/sub%5c.hidden",
            "/a/%2e%2e/.env",
            "/a/%2e%2e/%2eenv",
            "/sub/../.env",
            "/sub/%2e%2e/.git/config",
        ] {
            assert_eq!(get(uri).await, (404, String::new()), "{uri}");
        }
        for (uri, want) in [
            ("/app.js", "APP"),
            ("/%61pp.js", "APP"),
            ("/.well-known/x", "WELL-KNOWN"),
            ("/%2ewell-known/x", "WELL-KNOWN"),
            ("/deep/link", "INDEX"),
        ] {
            assert_eq!(get(uri).await, (200, want.to_string()), "{uri}");
        }
    }

    #[test]
    fn etag_comparison_is_weak() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("W/\"abc\""));
        for (inm, want) in [
            ("W/\"abc\"", true),
            ("\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
        ] {
            assert_eq!(
                etag_matches(Some(&HeaderValue::from_static(inm)), &h),
                want,
                "{inm}"
            );
        }
        assert!(!etag_matches(None, &h));
    }
}
