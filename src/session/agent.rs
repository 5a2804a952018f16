//! A short, safe summary of a `User-Agent` header ("Chrome 131 on Linux"),
//! kept with a session so that an operator listing a user's sessions can tell
//! them apart. The raw header is never kept: it is long, client-chosen text
//! (a log or UI injection vector) and a fingerprint. The summary is built only
//! from a fixed set of names and a major version of at most five digits, so
//! nothing the client chose beyond that can come through.

/// Browsers in the order they must be tested: Edge and Opera also say
/// "Chrome", Chrome also says "Safari"; the iOS browsers name themselves apart.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
    ("curl/", "curl"),
];

/// Operating systems, likewise ordered: iOS and Android say "like Mac OS X"
/// and "Linux".
const SYSTEMS: &[(&str, &str)] = &[
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
];

/// Headers longer than this are not looked at (real ones are ~150 bytes).
const MAX_SCANNED: usize = 1024;

/// "Firefox 128 on Linux", "Safari 17 on iOS", "curl 8", "Linux" or "other".
/// At most ~40 characters, of fixed names, digits and spaces only.
pub fn user_agent_summary(header: Option<&http::HeaderValue>) -> String {
    let Some(ua) = header
        .filter(|h| h.len() <= MAX_SCANNED)
        .and_then(|h| h.to_str().ok())
    else {
        return "other".into();
    };
    let browser = BROWSERS.iter().find_map(|(token, name)| {
        let at = ua.find(token)? + token.len();
        // Safari names its version `Version/`, which other agents use too.
        if *name == "Safari" && !ua.contains("Safari/") {
            return None;
        }
        let major: String = ua[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(5)
            .collect();
        Some(match major.is_empty() {
            true => (*name).to_string(),
            false => format!("{name} {major}"),
        })
    });
    let system = SYSTEMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b,
        (None, Some(s)) => s.to_string(),
        (None, None) => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn summary(ua: &str) -> String {
        user_agent_summary(Some(&HeaderValue::from_str(ua).unwrap()))
    }

    #[test]
    fn common_browsers() {
        for (ua, want) in [
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome 131 on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge 131 on Windows"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15", "Safari 17 on macOS"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", "Safari 17 on iOS"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "Chrome 131 on iOS"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome 131 on Android"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", "Opera 115 on Linux"),
            ("curl/8.5.0", "curl 8"),
            ("Mozilla/5.0 (X11; Linux x86_64)", "Linux"),
            ("", "other"),
            ("python-requests/2.32", "other"),
        ] {
            assert_eq!(summary(ua), want, "{ua}");
        }
    }

    #[test]
    fn nothing_chosen_by_the_client_comes_through() {
        for hostile in [
            "Chrome/<script>alert(1)</script> on Linux",
            "Firefox/99999999999999999999 Linux",
            "Edg/ hello \"world\" Windows",
        ] {
            let s = user_agent_summary(Some(&HeaderValue::from_bytes(hostile.as_bytes()).unwrap()));
            assert!(s.len() <= 40, "{s}");
            assert!(
                s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '),
                "{s:?} from {hostile:?}"
            );
            assert!(!s.contains("script") && !s.contains("world"), "{s}");
        }
        let long = format!("Chrome/131 {}", "x".repeat(MAX_SCANNED));
        assert_eq!(summary(&long), "other", "an overlong header is not read");
        let not_text = HeaderValue::from_bytes(b"Chrome/131 \xff Linux").unwrap();
        assert_eq!(user_agent_summary(Some(&not_text)), "other");
        assert_eq!(user_agent_summary(None), "other");
    }
}
