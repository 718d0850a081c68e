//! Detectors: each rule is one module behind [`Detector`], turning keyed
//! requests into [`Finding`]s. Detection time is the log's time, never the
//! wall clock, so a scan of a file finds what following it live would have.

pub mod behaviour;
pub mod key_in_url;
pub mod ordered;
pub mod registry;
pub mod revoked;
pub mod secrets;
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

pub use registry::{RULE_IDS, RuleId};

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

/// Which rules run, and their settings (`[rules]` in the configuration).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Rules that count clients count an IPv6 client by its network of
    /// this many bits (addresses inside a /64 rotate at will); 128 counts
    /// each address.
    pub ipv6_client_prefix: u8,
    pub key_in_url: Switch,
    pub secret_in_url: Switch,
    pub credential_param_in_url: Switch,
    pub revoked_key_in_use: RevokedConfig,
    pub key_bruteforce: ordered::BruteConfig,
    pub auth_failure_burst: ordered::BucketConfig,
    pub rejected_key_repeated: ordered::RepeatedConfig,
    pub key_rate_spike: behaviour::SpikeConfig,
    pub key_new_network: behaviour::NetworkConfig,
    pub key_fanout: behaviour::FanoutConfig,
    pub key_shared: behaviour::SharedConfig,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            ipv6_client_prefix: 64,
            key_in_url: Switch { enabled: true },
            secret_in_url: Switch { enabled: true },
            credential_param_in_url: Switch { enabled: true },
            revoked_key_in_use: RevokedConfig::default(),
            key_bruteforce: ordered::BruteConfig::default(),
            auth_failure_burst: ordered::BucketConfig::default(),
            rejected_key_repeated: ordered::RepeatedConfig::default(),
            key_rate_spike: behaviour::SpikeConfig::default(),
            key_new_network: behaviour::NetworkConfig::default(),
            key_fanout: behaviour::FanoutConfig::default(),
            key_shared: behaviour::SharedConfig::default(),
        }
    }
}

impl RulesConfig {
    /// The rules that need requests in time order, if any is on.
    pub fn ordered(&self) -> Option<ordered::OrderedDetectors> {
        ordered::OrderedDetectors::new(self)
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

/// A rule with nothing to set but whether it runs.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    pub enabled: bool,
}

/// `[rules.revoked_key_in_use]`: the revoked keys.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevokedConfig {
    pub enabled: bool,
    /// Key ids (16 hex characters, as keywatch prints them).
    pub ids: Vec<String>,
    /// Prefixes of revoked keys (as logged; with `logged_prefix_length`, at most that long).
    pub prefixes: Vec<String>,
    /// A file with one key id per line (`#` comments allowed).
    pub ids_file: Option<std::path::PathBuf>,
    /// A key that worked and is then rejected this many times in a row
    /// looks revoked…
    pub infer_after_rejections: u32,
    /// …or at least `infer_min_rejections` times in a row spanning
    /// `infer_min_hours` hours.
    pub infer_min_rejections: u32,
    pub infer_min_hours: u32,
}

impl Default for RevokedConfig {
    fn default() -> Self {
        RevokedConfig {
            enabled: true,
            ids: Vec::new(),
            prefixes: Vec::new(),
            ids_file: None,
            infer_after_rejections: 10,
            infer_min_rejections: 3,
            infer_min_hours: 1,
        }
    }
}

/// The rules that are switched on.
#[derive(Default)]
pub struct Detectors {
    pub key_in_url: Option<key_in_url::KeyInUrl>,
    pub secret_in_url: Option<secrets::SecretInUrl>,
    pub credential_param: Option<secrets::CredentialParamInUrl>,
    pub revoked: Option<revoked::RevokedKeyInUse>,
}

impl Detectors {
    /// Every rule with its default settings.
    pub fn all() -> Self {
        Detectors::new(&RulesConfig::default())
    }

    /// The rules the configuration switches on.
    pub fn new(rules: &RulesConfig) -> Self {
        Detectors {
            key_in_url: rules.key_in_url.enabled.then(key_in_url::KeyInUrl::default),
            secret_in_url: rules
                .secret_in_url
                .enabled
                .then(secrets::SecretInUrl::default),
            credential_param: rules
                .credential_param_in_url
                .enabled
                .then(secrets::CredentialParamInUrl::default),
            revoked: rules
                .revoked_key_in_use
                .enabled
                .then(revoked::RevokedKeyInUse::default),
        }
    }

    /// The rules `rules` switches on, keeping the state of those that were
    /// on already (a reload).
    pub fn reconfigure(self, rules: &RulesConfig) -> Self {
        let fresh = Detectors::new(rules);
        Detectors {
            key_in_url: fresh
                .key_in_url
                .and(self.key_in_url.or_else(|| Some(Default::default()))),
            secret_in_url: fresh
                .secret_in_url
                .and(self.secret_in_url.or_else(|| Some(Default::default()))),
            credential_param: fresh
                .credential_param
                .and(self.credential_param.or_else(|| Some(Default::default()))),
            revoked: fresh
                .revoked
                .and(self.revoked.or_else(|| Some(Default::default()))),
        }
    }

    pub fn observe(&mut self, req: &KeyedRequest<'_>) {
        if let Some(d) = &mut self.key_in_url {
            d.observe(req);
        }
        if !req.secrets.is_empty() {
            if let Some(d) = &mut self.secret_in_url {
                d.observe(req);
            }
            if let Some(d) = &mut self.credential_param {
                d.observe(req);
            }
        }
        if let Some(d) = &mut self.revoked {
            d.observe(req);
        }
    }

    pub fn merge(&mut self, other: Detectors) {
        if let (Some(a), Some(b)) = (&mut self.key_in_url, other.key_in_url) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.secret_in_url, other.secret_in_url) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.credential_param, other.credential_param) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.revoked, other.revoked) {
            a.merge(b);
        }
    }

    /// All findings, most severe first, then by first time.
    pub fn findings(&self, names: &[String]) -> Vec<Finding> {
        let mut all = Vec::new();
        if let Some(d) = &self.key_in_url {
            all.extend(d.findings(names));
        }
        if let Some(d) = &self.secret_in_url {
            all.extend(d.findings(names));
        }
        if let Some(d) = &self.credential_param {
            all.extend(d.findings(names));
        }
        if let Some(d) = &self.revoked {
            all.extend(d.findings(names));
        }
        sort_findings(&mut all);
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
