//! Loading: TOML file, then `OIDC_BFF__SECTION__KEY` environment overrides,
//! then validation. Every problem found is reported as `key: what is wrong`.

use super::Config;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use std::fmt;
use std::path::Path;

/// One thing wrong with the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, reason } => {
                vec![Problem::new("config", format!("{path}: {reason}"))]
            }
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

/// Loads the file at `path`, applies environment overrides and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_figment(
        Figment::from(Toml::string(&text)).merge(env_overrides()),
        base,
    )
}

/// Like [`load`] but from a string, still with environment overrides; `*_file`
/// paths are relative to the current directory. Used by tests and the demo.
pub fn load_from_str(toml: &str) -> Result<Config, ConfigError> {
    from_figment(
        Figment::from(Toml::string(toml)).merge(env_overrides()),
        Path::new("."),
    )
}

fn env_overrides() -> Env {
    Env::prefixed("OIDC_BFF__").split("__")
}

fn from_figment(figment: Figment, base: &Path) -> Result<Config, ConfigError> {
    let mut config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Invalid(e.into_iter().map(problem_from_figment).collect()))?;
    let mut problems = super::files::read_files(&mut config, base);
    problems.extend(super::validate::validate(&mut config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn problem_from_figment(e: figment::Error) -> Problem {
    use figment::error::Kind;
    let mut path = e.path.clone();
    let message = match &e.kind {
        Kind::UnknownField(field, expected) => {
            // Figment already ends the path with the unknown field, mostly.
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key (expected one of: {})", expected.join(", "))
        }
        Kind::MissingField(field) => {
            path.push(field.to_string());
            "is required".to_string()
        }
        other => other.to_string(),
    };
    Problem::new(key_of(&path), message)
}

/// `["route", "1", "path"]` -> `route[1].path`, as validation names keys.
fn key_of(path: &[String]) -> String {
    let mut key = String::new();
    for seg in path {
        if !key.is_empty() && seg.parse::<usize>().is_ok() {
            key.push_str(&format!("[{seg}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(seg);
        }
    }
    if key.is_empty() {
        "config".into()
    } else {
        key
    }
}
