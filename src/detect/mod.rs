//! Detectors: each rule is one module behind [`Detector`], turning keyed
//! requests into [`Finding`]s. Detection time is the log's time, never the
//! wall clock, so a scan of a file finds what following it live would have.

pub mod key_in_url;

use serde::Serialize;

use crate::keys::{KeyId, Place};
use crate::pipeline::KeyedRequest;
use crate::usage::KeyLabel;

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Something a person should look at, explained.
#[derive(Clone, Debug)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub key: Option<(KeyId, KeyLabel)>,
    /// The first client seen, printable.
    pub client: Option<String>,
    /// How many distinct clients were involved.
    pub clients: u64,
    pub place: Option<Place>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
    pub message: String,
    /// The offending request or URL with every credential value redacted.
    pub evidence: Option<String>,
    /// What to do about it.
    pub action: &'static str,
}

/// One detection rule.
pub trait Detector: Send + Sized {
    /// The rule id, part of the output schema.
    const RULE: &'static str;
    fn observe(&mut self, req: &KeyedRequest<'_>);
    /// Folds in the state of the same rule from another part of the input
    /// (a later chunk of the same file).
    fn merge(&mut self, other: Self);
    /// Findings so far; `names` are the configured key names.
    fn findings(&self, names: &[String]) -> Vec<Finding>;
}

/// The rules that are switched on.
#[derive(Default)]
pub struct Detectors {
    pub key_in_url: Option<key_in_url::KeyInUrl>,
}

impl Detectors {
    /// Every rule with its default settings.
    pub fn all() -> Self {
        Detectors {
            key_in_url: Some(key_in_url::KeyInUrl::default()),
        }
    }

    pub fn observe(&mut self, req: &KeyedRequest<'_>) {
        if let Some(d) = &mut self.key_in_url {
            d.observe(req);
        }
    }

    pub fn merge(&mut self, other: Detectors) {
        if let (Some(a), Some(b)) = (&mut self.key_in_url, other.key_in_url) {
            a.merge(b);
        }
    }

    /// All findings, most severe first, then by first time.
    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut all = Vec::new();
        if let Some(d) = &self.key_in_url {
            all.extend(d.findings(names));
        }
        all.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_ms.cmp(&b.first_ms))
                .then(b.count.cmp(&a.count))
        });
        all
    }
}

/// How a key is named in messages: `billing-service (kw_l…9f2a)` or `kw_l…9f2a`.
pub fn key_phrase(label: &KeyLabel, names: &[String]) -> String {
    match label.name.and_then(|i| names.get(i as usize)) {
        Some(n) => format!("{n} ({})", label.masked),
        None => label.masked.to_string(),
    }
}
