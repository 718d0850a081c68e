//! Detectors: each rule is one file of [`rules`], behind [`Detector`] (any
//! order) or [`ordered::OrderedRule`] (log order), turning keyed requests
//! into [`Finding`]s. Detection time is the log's time, never the
//! wall clock, so a scan of a file finds what following it live would have.

pub mod behaviour;
pub mod episode;
pub mod ordered;
pub mod registry;
pub mod rules;
pub mod tally;

use serde::Serialize;

use crate::keys::{KeyId, Place};
use crate::request::KeyedRequest;
use crate::usage::KeyLabel;

/// How urgent a finding is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Reads what [`Severity::as_str`] wrote.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

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
    /// When the condition stopped holding, for rules that resolve.
    pub resolved_ms: Option<i64>,
}

pub use registry::{RULE_IDS, RuleInfo};
pub use rules::{Detectors, RuleId, RulesConfig, Switch};

impl RulesConfig {
    /// The rules that need requests in time order, if any is on.
    pub fn ordered(&self) -> Option<ordered::OrderedDetectors> {
        ordered::OrderedDetectors::new(self)
    }
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

/// The rule that has no plain part.
impl Detector for () {
    const RULE: &'static str = "";
    fn observe(&mut self, _: &KeyedRequest<'_>) {}
    fn merge(&mut self, _: Self) {}
    fn findings(&self, _: &[String]) -> Vec<Finding> {
        Vec::new()
    }
}

/// Sorts findings: most severe first, then by first time, then stably.
pub fn sort_findings(all: &mut [Finding]) {
    all.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.first_ms.cmp(&b.first_ms))
            .then(b.count.cmp(&a.count))
            .then(a.key.map(|k| k.0).cmp(&b.key.map(|k| k.0)))
            .then(a.place.cmp(&b.place))
            .then(a.client.cmp(&b.client))
            .then(a.rule.cmp(b.rule))
    });
}

/// How a key is named in messages: `billing-service (kw_l…9f2a)` or `kw_l…9f2a`.
pub fn key_phrase(label: &KeyLabel, names: &[String]) -> String {
    match label.name.and_then(|i| names.get(i as usize)) {
        Some(n) => format!("{n} ({})", label.masked),
        None => label.masked.to_string(),
    }
}
