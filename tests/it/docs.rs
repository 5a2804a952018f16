//! The documentation holds together: every relative link in the repository's
//! Markdown files (README.md, docs/, and the rest) reaches a file inside the
//! repository, and every `#anchor` a heading of its page, spelled as GitHub
//! spells heading anchors; the README links every page under docs/; and no
//! file refers to notes that live outside the repository.

use crate::harness::repo_root;
use regex::Regex;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files git would commit: tracked ones plus new ones not ignored, so a page
/// written but not yet added is checked too.
fn repository_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cannot run git (the docs checks list the repository's files with it)");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: BTreeSet<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8(p.to_vec()).expect("a non-UTF-8 file name")))
        // Deleted in the working tree but still tracked: nothing to read.
        .filter(|p| repo_root().join(p).exists())
        .collect();
    assert!(
        files.contains(Path::new("README.md")),
        "git ls-files did not list README.md"
    );
    files.into_iter().collect()
}

fn markdown_files() -> Vec<PathBuf> {
    repository_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
}

/// The text outside fenced code blocks, and the headings found there.
/// Code blocks are dropped because `# comment` lines and `](` in code are
/// neither headings nor links.
fn prose_and_headings(markdown: &str) -> (String, Vec<String>) {
    let mut prose = String::new();
    let mut headings = Vec::new();
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) => {
                if trimmed.starts_with(f) {
                    fence = None;
                }
                continue;
            }
            None if trimmed.starts_with("```") => {
                fence = Some("```");
                continue;
            }
            None if trimmed.starts_with("~~~") => {
                fence = Some("~~~");
                continue;
            }
            None => {}
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            headings.push(
                line[hashes..]
                    .trim()
                    .trim_end_matches('#')
                    .trim()
                    .to_string(),
            );
        }
        prose.push_str(line);
        prose.push('\n');
    }
    (prose, headings)
}

/// GitHub's anchor for a heading: the rendered text in lower case, with
/// everything but letters, digits, spaces, `-` and `_` removed, and spaces
/// turned into `-`. Repeats get `-1`, `-2`, ... in order.
fn anchors(headings: &[String]) -> BTreeSet<String> {
    let link = Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for heading in headings {
        let text = link.replace_all(heading, "$1");
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

fn anchors_of(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    anchors(&prose_and_headings(&text).1)
}

/// Relative link targets (`](path)`, `](path#anchor)`, `](#anchor)`) in the
/// prose of a Markdown file; inline code spans are not links.
fn relative_links(markdown: &str) -> Vec<String> {
    let (prose, _) = prose_and_headings(markdown);
    let code_span = Regex::new(r"`[^`]*`").unwrap();
    let prose = code_span.replace_all(&prose, "");
    let link = Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).unwrap();
    let scheme = Regex::new(r"^[A-Za-z][A-Za-z0-9+.-]*:").unwrap();
    link.captures_iter(&prose)
        .map(|c| c[1].to_string())
        .filter(|target| !scheme.is_match(target))
        .collect()
}

#[test]
fn anchors_are_spelled_as_github_spells_them() {
    let headings: Vec<String> = [
        "Forward auth (nginx, Traefik)",
        "nginx (`auth_request`)",
        "Pages, header size, logs",
        "Try it",
        "Try it",
        "**Bold** and [a link](x.md)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let got = anchors(&headings);
    let want: BTreeSet<String> = [
        "forward-auth-nginx-traefik",
        "nginx-auth_request",
        "pages-header-size-logs",
        "try-it",
        "try-it-1",
        "bold-and-a-link",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);

    let (_, headings) = prose_and_headings("# Title\n\n```sh\n# not a heading\n```\n\n## Next\n");
    assert_eq!(headings, ["Title", "Next"]);
    let links = relative_links(
        "[a](docs/a.md) [b](b.md#x) [c](#y) [d](https://example.com) `[e](e.md)`\n\n\
         ```md\n[f](f.md)\n```\n",
    );
    assert_eq!(links, ["docs/a.md", "b.md#x", "#y"]);
}

#[test]
fn every_relative_link_resolves() {
    let root = repo_root()
        .canonicalize()
        .expect("the repository root exists");
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let path = root.join(&file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let dir = path.parent().unwrap();
        for link in relative_links(&text) {
            checked += 1;
            let (target, anchor) = match link.split_once('#') {
                Some((t, a)) => (t, Some(a)),
                None => (link.as_str(), None),
            };
            let target_path = if target.is_empty() {
                path.clone()
            } else {
                dir.join(target)
            };
            let Ok(resolved) = target_path.canonicalize() else {
                problems.push(format!("{}: ({link}): no such file", file.display()));
                continue;
            };
            if !resolved.starts_with(&root) {
                problems.push(format!(
                    "{}: ({link}): outside the repository",
                    file.display()
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                problems.push(format!(
                    "{}: ({link}): an anchor into a file that is not Markdown",
                    file.display()
                ));
                continue;
            }
            let known = anchors_of(&resolved);
            if !known.contains(anchor) {
                problems.push(format!(
                    "{}: ({link}): no heading with anchor #{anchor} (there are: {})",
                    file.display(),
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken documentation links:\n{}",
        problems.join("\n")
    );
    assert!(
        checked > 20,
        "only {checked} links found: is the parser broken?"
    );
}

#[test]
fn the_readme_links_every_page_under_docs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let linked: BTreeSet<String> = relative_links(&readme)
        .into_iter()
        .map(|l| l.split('#').next().unwrap().to_string())
        .collect();
    let pages: Vec<PathBuf> = markdown_files()
        .into_iter()
        .filter(|p| p.starts_with("docs"))
        .collect();
    assert!(!pages.is_empty(), "no Markdown pages under docs/");
    let missing: Vec<String> = pages
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| !linked.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not link these pages: {missing:?}"
    );
}

#[test]
fn no_file_refers_to_notes_outside_the_repository() {
    // Spelled in pieces so that this file does not name them itself.
    let needles: Vec<String> = ["DESIGN", "TESTING", "CRATES", "EXAMPLES"]
        .iter()
        .map(|name| format!("{name}.md"))
        .chain([format!("..{}shared", '/')])
        .collect();
    let mut problems = Vec::new();
    let files = repository_files();
    for file in &files {
        let path = repo_root().join(file);
        if path.is_dir() {
            // A submodule or a symlink to a directory: its files are listed on their own.
            continue;
        }
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for needle in &needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                problems.push(format!("{} mentions {needle}", file.display()));
            }
        }
    }
    assert!(files.len() > 50, "only {} files listed", files.len());
    assert!(
        problems.is_empty(),
        "files refer to documents outside the repository:\n{}",
        problems.join("\n")
    );
}
