//! Alert channels as configured (`[alerts]`, `[channels.NAME]`), checked and
//! resolved: secrets read from the environment or files, addresses parsed,
//! and each notice rendered into the exact bytes that channel sends.
//!
//! Secrets never sit in the configuration file: a password, a signing secret
//! or a secret header is written `env:NAME` or `file:PATH`, and a webhook URL
//! (which for Slack, Discord and Teams *is* the credential) may be too. No
//! message keywatch prints shows more of a URL than its scheme and host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, Message, MultiPart};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Dur};
use crate::deliver::notice::Notice;
use crate::deliver::retry::RetryPolicy;
use crate::deliver::sign::SigningSecret;
use crate::detect::{RULE_IDS, Severity};

/// `[alerts]`: pacing and retries for every channel.
#[derive(Debug, Default, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How long a new group waits for more alerts before its first notice.
    pub group_wait: Option<Dur>,
    /// The least time between two notices about one group that changed.
    pub group_interval: Option<Dur>,
    /// How soon a still-firing group with new activity is notified again.
    pub repeat_interval: Option<Dur>,
    /// `alert` (rule and key or client, the default) or `rule`.
    pub group_by: Option<GroupBy>,
    /// First retry delay; doubled each attempt up to `retry_max`.
    pub retry_initial: Option<Dur>,
    pub retry_max: Option<Dur>,
    /// An undelivered notice expires (and is reported) after this long.
    pub expire_after: Option<Dur>,
}

/// How alerts are put into one notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per rule and key (or client).
    Alert,
    /// One group per rule: every key's alert of that rule in one notice.
    Rule,
}

/// What a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    /// A signed JSON POST in keywatch's schema.
    Webhook,
    Slack,
    Discord,
    Teams,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Discord => "discord",
            ChannelKind::Teams => "teams",
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on this machine (port 25).
    None,
}

/// `[channels.NAME]` as written.
#[derive(Debug, Clone, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// Alerts go to this channel (default true).
    pub alerts: Option<bool>,
    /// The daily summary goes to this channel (default false).
    #[serde(default)]
    pub summary: bool,
    /// Only these rules reach this channel (default: every rule).
    pub rules: Option<Vec<String>>,
    /// Only alerts at least this severe reach this channel.
    pub min_severity: Option<Severity>,
    pub group_wait: Option<Dur>,
    pub group_interval: Option<Dur>,
    pub repeat_interval: Option<Dur>,
    pub group_by: Option<GroupBy>,
    // Email.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<TlsMode>,
    pub username: Option<String>,
    /// `env:NAME` or `file:PATH`.
    pub password: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// A PEM file of extra CA certificates to trust (a private relay).
    pub ca_file: Option<PathBuf>,
    // Webhooks.
    /// `https://…`, or `env:NAME` / `file:PATH` when the URL is a secret.
    pub url: Option<String>,
    /// The signing secret (`whsec_…` or raw), `env:NAME` or `file:PATH`.
    pub secret: Option<String>,
    /// Also send GitHub's `X-Hub-Signature-256`.
    #[serde(default)]
    pub github_signature: bool,
    /// Extra headers; a value may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub connect_timeout: Option<Dur>,
    pub timeout: Option<Dur>,
}

/// When a group is notified (the Alertmanager timers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub group_by: GroupBy,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 60 * 60),
            group_by: GroupBy::Alert,
        }
    }
}

/// A channel ready to render and send.
#[derive(Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub alerts: bool,
    /// Receives the daily summary.
    pub summary: bool,
    pub rules: Option<BTreeSet<String>>,
    pub min_severity: Severity,
    pub pacing: Pacing,
    /// Changes whenever the channel's settings change: a channel disabled by
    /// a 410 is tried again once this differs.
    pub fingerprint: String,
    pub target: Target,
}

/// Where a channel's notices go.
#[derive(Clone)]
pub enum Target {
    Email(EmailTarget),
    Http(HttpTarget),
}

#[derive(Clone)]
pub struct EmailTarget {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<(String, String)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct HttpTarget {
    pub url: String,
    /// Scheme and host only: what messages may show.
    pub shown: String,
    pub secret: Option<SigningSecret>,
    pub github: bool,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Channel {
    /// Whether an alert of this rule and severity goes to this channel.
    pub fn routes(&self, rule: &str, severity: Severity) -> bool {
        self.alerts
            && severity >= self.min_severity
            && self.rules.as_ref().is_none_or(|r| r.contains(rule))
    }

    /// The bytes this channel sends for a day's summary (notice `id`): a
    /// mail with the HTML report and a text alternative, the `summary`
    /// object in a signed envelope, or a short chat message.
    pub fn render_summary(
        &self,
        id: &str,
        daily: &crate::output::daily::Daily,
        summary: &serde_json::Value,
    ) -> Result<Vec<u8>, String> {
        let t = &daily.totals;
        let title = format!(
            "keywatch daily summary {}: {} requests, {} keys, {} rejected, {} findings",
            daily.day,
            t.requests,
            daily.keys.len(),
            t.rejected,
            daily.findings.len()
        );
        let mut markdown = Vec::new();
        crate::output::markdown::render(std::slice::from_ref(daily), &mut markdown)
            .map_err(|e| e.to_string())?;
        let markdown = String::from_utf8_lossy(&markdown).into_owned();
        let json = match self.kind {
            ChannelKind::Email => {
                let Target::Email(t) = &self.target else {
                    return Err("an email channel without a mail server".into());
                };
                let mut html = Vec::new();
                crate::output::html::render(std::slice::from_ref(daily), &mut html)
                    .map_err(|e| e.to_string())?;
                return email_message(
                    t,
                    id,
                    &title,
                    markdown,
                    String::from_utf8_lossy(&html).into_owned(),
                );
            }
            ChannelKind::Webhook => serde_json::json!({
                "schema": "keywatch.summary.v1",
                "id": id,
                "day": daily.day,
                "title": title,
                "summary": summary,
            }),
            ChannelKind::Slack => serde_json::json!({
                "text": crate::deliver::safe::truncate(&crate::deliver::safe::slack(&markdown), 3_000),
            }),
            ChannelKind::Discord => serde_json::json!({
                "content": crate::deliver::safe::truncate(&markdown, 2_000),
                "allowed_mentions": {"parse": []},
            }),
            ChannelKind::Teams => crate::deliver::notice::teams_card(vec![
                serde_json::json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": title}),
                serde_json::json!({"type": "TextBlock", "wrap": true, "text": crate::deliver::safe::truncate(&markdown, 20_000)}),
            ]),
        };
        serde_json::to_vec(&json).map_err(|e| e.to_string())
    }

    /// The bytes this channel sends for `notice`: a whole mail message, or
    /// a JSON body.
    pub fn render(&self, notice: &Notice) -> Result<Vec<u8>, String> {
        let json = match self.kind {
            ChannelKind::Email => {
                let Target::Email(t) = &self.target else {
                    return Err("an email channel without a mail server".into());
                };
                return email(t, notice);
            }
            ChannelKind::Webhook => notice.generic(),
            ChannelKind::Slack => notice.slack(),
            ChannelKind::Discord => notice.discord(),
            ChannelKind::Teams => notice.teams(),
        };
        serde_json::to_vec(&json).map_err(|e| e.to_string())
    }

    /// Where it sends, safe to print: `smtp://host:port` or `https://host`.
    pub fn shown(&self) -> String {
        match &self.target {
            Target::Email(t) => format!("smtp://{}:{}", t.host, t.port),
            Target::Http(t) => t.shown.clone(),
        }
    }
}

fn email(t: &EmailTarget, notice: &Notice) -> Result<Vec<u8>, String> {
    email_message(
        t,
        &notice.id,
        &notice.subject(),
        notice.text(),
        notice.html(),
    )
}

/// A whole mail: `subject` must already be one safe line.
fn email_message(
    t: &EmailTarget,
    id: &str,
    subject: &str,
    text: String,
    html: String,
) -> Result<Vec<u8>, String> {
    let mut b = Message::builder()
        .from(t.from.clone())
        .subject(crate::deliver::safe::one_line(subject.as_bytes(), 200))
        .message_id(Some(format!("<{id}@keywatch>")));
    for to in &t.to {
        b = b.to(to.clone());
    }
    let m = b
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("building the message: {e}"))?;
    Ok(m.formatted())
}

/// The retry policy the configuration sets.
pub fn retry_policy(c: &AlertsConfig) -> RetryPolicy {
    let d = RetryPolicy::default();
    RetryPolicy {
        initial: c.retry_initial.map_or(d.initial, |x| x.0),
        max_delay: c.retry_max.map_or(d.max_delay, |x| x.0),
        max_retry_after: d.max_retry_after,
        expire_after: c.expire_after.map_or(d.expire_after, |x| x.0),
    }
}

/// Reads a secret setting: `env:NAME` or `file:PATH` (one trailing newline
/// dropped). A literal value is refused so no secret ends up in the file; a
/// `file:` secret must be a regular file only its owner may read, of at most
/// [`SECRET_CAP`](crate::files::SECRET_CAP) bytes. No error shows any of the
/// value.
pub fn read_secret(value: &str) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(format!(
                "environment variable {name} is not set; export it before starting keywatch"
            )),
        };
    }
    if value.starts_with("file://") {
        return Err(
            "a file:// URL is not a secret reference; write file:/path/to/the/secret".into(),
        );
    }
    if let Some(path) = value.strip_prefix("file:") {
        let bytes = crate::files::read_bounded(
            std::path::Path::new(path),
            crate::files::SECRET_CAP,
            crate::files::Named::Secret,
        )?;
        let text = String::from_utf8(bytes).map_err(|_| {
            format!("{path} is not UTF-8 text; a secret file holds one line of text")
        })?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    Err("secrets are not written in the configuration file; use env:NAME or file:PATH".into())
}

/// Whether a setting is a secret reference rather than a literal.
fn is_reference(value: &str) -> bool {
    value.starts_with("env:") || (value.starts_with("file:") && !value.starts_with("file://"))
}

/// Hosts whose webhook URLs are themselves the credential.
const CHAT_HOSTS: [&str; 7] = [
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "outlook.office.com",
    "logic.azure.com",
    "environment.api.powerplatform.com",
];

/// Why a literal URL may not be written in the configuration, if it may not.
fn literal_url_problem(kind: ChannelKind, url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    if matches!(
        kind,
        ChannelKind::Slack | ChannelKind::Discord | ChannelKind::Teams
    ) {
        return Some(format!(
            "a {} webhook URL is the credential itself; put it in an environment variable or a file and write url = \"env:NAME\" or \"file:PATH\"",
            kind.as_str()
        ));
    }
    if authority.contains('@') {
        return Some(format!(
            "{scheme}://…@{host}: a user name or password in the URL is a secret; use a header with a secret reference, or url = \"env:NAME\""
        ));
    }
    if CHAT_HOSTS
        .iter()
        .any(|h| host == *h || host.ends_with(&format!(".{h}")))
    {
        return Some(format!(
            "{scheme}://{host} URLs are credentials themselves; write url = \"env:NAME\" or \"file:PATH\""
        ));
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    for (name, value) in crate::url::query_pairs(query.as_bytes()) {
        let mut buf = [0u8; 64];
        let credential = crate::url::normalize_name(name, &mut buf).is_some_and(|n| {
            crate::keys::sources::credential_named(n) || n == b"sig" || n == b"code"
        });
        if credential && !value.is_empty() {
            return Some(format!(
                "the URL's `{}` parameter carries a secret; write url = \"env:NAME\" or \"file:PATH\"",
                String::from_utf8_lossy(name)
            ));
        }
    }
    None
}

/// `https://hooks.slack.com/services/T0/B0/xyz` → `https://hooks.slack.com`.
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Drop any user:password@ part.
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The configured channels, checked and resolved. An error names the
/// setting (`channels.NAME.setting`) and the line of the channel's table.
pub fn channels(config: &Config) -> Result<Vec<Channel>, String> {
    let mut out = Vec::new();
    for (name, c) in &config.channels {
        let channel = resolve(name, c, &config.alerts).map_err(|(setting, msg)| {
            let table = format!("channels.{name}");
            // A header's problem is on the header's own line.
            let line = match msg.split_once(": ") {
                Some((header, _)) if setting == "headers" && c.headers.contains_key(header) => {
                    config.setting_line(&format!("{table}.headers"), header)
                }
                _ => config.setting_line(&table, setting),
            };
            let at = line.map_or_else(String::new, |l| format!("line {l}: "));
            format!("{at}{table}.{setting}: {msg}")
        })?;
        out.push(channel);
    }
    Ok(out)
}

type Bad = (&'static str, String);

fn resolve(name: &str, c: &ChannelConfig, alerts: &AlertsConfig) -> Result<Channel, Bad> {
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
    {
        return Err((
            "type",
            format!("channel name {name:?}: use letters, digits, - and _"),
        ));
    }
    let rules = match &c.rules {
        None => None,
        Some(list) => {
            for r in list {
                if !RULE_IDS.contains(&r.as_str()) {
                    return Err((
                        "rules",
                        format!("{r:?} is not a rule; rules are {}", RULE_IDS.join(", ")),
                    ));
                }
            }
            Some(list.iter().cloned().collect())
        }
    };
    let d = Pacing::default();
    let pick = |own: Option<Dur>, all: Option<Dur>, def: Duration| own.or(all).map_or(def, |x| x.0);
    let pacing = Pacing {
        group_wait: pick(c.group_wait, alerts.group_wait, d.group_wait),
        group_interval: pick(c.group_interval, alerts.group_interval, d.group_interval),
        repeat_interval: pick(c.repeat_interval, alerts.repeat_interval, d.repeat_interval),
        group_by: c.group_by.or(alerts.group_by).unwrap_or(d.group_by),
    };
    let email_only: [(&'static str, bool); 7] = [
        ("host", c.host.is_some()),
        ("port", c.port.is_some()),
        ("tls", c.tls.is_some()),
        ("username", c.username.is_some()),
        ("password", c.password.is_some()),
        ("from", c.from.is_some()),
        ("to", !c.to.is_empty()),
    ];
    let http_only: [(&'static str, bool); 4] = [
        ("url", c.url.is_some()),
        ("secret", c.secret.is_some()),
        ("github_signature", c.github_signature),
        ("headers", !c.headers.is_empty()),
    ];
    let (misplaced, kind_word) = if c.kind == ChannelKind::Email {
        (&http_only[..], "webhook, slack, discord and teams")
    } else {
        (&email_only[..], "email")
    };
    if let Some((setting, _)) = misplaced.iter().find(|(_, set)| *set) {
        return Err((setting, format!("only for type = {kind_word} channels")));
    }
    let target = if c.kind == ChannelKind::Email {
        Target::Email(email_target(c)?)
    } else {
        Target::Http(http_target(c)?)
    };
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        // A stable digest of the settings (not of secret values).
        struct Sha(Sha256);
        impl Hasher for Sha {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
        }
        let mut h = Sha(Sha256::new());
        c.hash(&mut h);
        h.0.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    Ok(Channel {
        name: name.to_owned(),
        kind: c.kind,
        alerts: c.alerts.unwrap_or(true),
        summary: c.summary,
        rules,
        min_severity: c.min_severity.unwrap_or(Severity::Info),
        pacing,
        fingerprint,
        target,
    })
}

fn email_target(c: &ChannelConfig) -> Result<EmailTarget, Bad> {
    let host = c.host.clone().ok_or((
        "host",
        "the mail server is required, e.g. host = \"smtp.example.com\"".to_owned(),
    ))?;
    let tls = c.tls.unwrap_or(TlsMode::Starttls);
    let port = c.port.unwrap_or(match tls {
        TlsMode::Starttls => 587,
        TlsMode::Tls => 465,
        TlsMode::None => 25,
    });
    let credentials = match (&c.username, &c.password) {
        (None, None) => None,
        (Some(_), None) => {
            return Err((
                "password",
                "username is set; set password = \"env:NAME\" or \"file:PATH\" too".into(),
            ));
        }
        (None, Some(_)) => return Err(("username", "password is set without a username".into())),
        (Some(u), Some(p)) => Some((u.clone(), read_secret(p).map_err(|e| ("password", e))?)),
    };
    if credentials.is_some() && tls == TlsMode::None && !is_loopback(&host) {
        return Err((
            "tls",
            format!(
                "tls = \"none\" would send the password to {host} unencrypted; use starttls or tls"
            ),
        ));
    }
    let from: Mailbox = c
        .from
        .as_deref()
        .ok_or((
            "from",
            "the sender is required, e.g. from = \"keywatch <keywatch@example.com>\"".to_owned(),
        ))?
        .parse()
        .map_err(|e| ("from", format!("not a mail address: {e}")))?;
    if c.to.is_empty() {
        return Err((
            "to",
            "at least one recipient is required, e.g. to = [\"security@example.com\"]".into(),
        ));
    }
    let to =
        c.to.iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| ("to", format!("{t:?} is not a mail address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
    let ca_pem = match &c.ca_file {
        None => None,
        Some(p) => Some(
            crate::files::read_bounded(p, crate::files::PEM_CAP, crate::files::Named::Public)
                .map_err(|e| ("ca_file", e))?,
        ),
    };
    Ok(EmailTarget {
        host,
        port,
        tls,
        credentials,
        from,
        to,
        ca_pem,
        timeout: c.timeout.map_or(Duration::from_secs(30), |d| d.0),
    })
}

/// Headers keywatch sets itself and a configuration may not replace.
const OWN_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hub-signature-256",
];

fn http_target(c: &ChannelConfig) -> Result<HttpTarget, Bad> {
    let raw = c.url.as_deref().ok_or((
        "url",
        "the receiver's URL is required (url = \"env:NAME\" keeps a secret URL out of this file)"
            .to_owned(),
    ))?;
    let url = if is_reference(raw) {
        read_secret(raw).map_err(|e| ("url", e))?
    } else {
        raw.to_owned()
    };
    let url = url.trim().to_owned();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        return Err((
            "url",
            // Nothing read from a secret reference is ever echoed.
            if is_reference(raw)
                || scheme.is_empty()
                || scheme.len() > 16
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                "only http:// and https:// URLs (or env:NAME, file:PATH)".to_owned()
            } else {
                format!("{scheme}: only http:// and https:// URLs (or env:NAME, file:PATH)")
            },
        ));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err((
            "url",
            "the URL holds a space or a control character".to_owned(),
        ));
    }
    if !is_reference(raw)
        && let Some(problem) = literal_url_problem(c.kind, &url)
    {
        return Err(("url", problem));
    }
    let secret = match &c.secret {
        Some(s) => {
            let text = read_secret(s).map_err(|e| ("secret", e))?;
            Some(SigningSecret::parse(&text).map_err(|e| ("secret", e.to_string()))?)
        }
        None if c.kind == ChannelKind::Webhook => {
            return Err((
                "secret",
                "a webhook is signed; set secret = \"env:NAME\" or \"file:PATH\" (16 bytes or more, or whsec_…)".into(),
            ));
        }
        None => None,
    };
    if c.github_signature && secret.is_none() {
        return Err(("github_signature", "needs a secret to sign with".into()));
    }
    let mut headers = Vec::new();
    for (k, v) in &c.headers {
        let token = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(("headers", format!("{k:?} is not a header name")));
        }
        if OWN_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(("headers", format!("{k} is set by keywatch itself")));
        }
        if !is_reference(v) {
            return Err((
                "headers",
                format!(
                    "{k}: a header value is a secret more often than not; put it in an environment variable or a file and write {k} = \"env:NAME\" or \"file:PATH\""
                ),
            ));
        }
        let value = read_secret(v).map_err(|e| ("headers", format!("{k}: {e}")))?;
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(("headers", format!("{k}: the value holds a line break")));
        }
        headers.push((k.clone(), value));
    }
    Ok(HttpTarget {
        shown: shown_url(&url),
        url,
        secret,
        github: c.github_signature,
        headers,
        connect_timeout: c.connect_timeout.map_or(Duration::from_secs(5), |d| d.0),
        timeout: c.timeout.map_or(Duration::from_secs(15), |d| d.0),
    })
}

/// A `file:` reference to a private file holding `value`, for tests (the
/// directory lives as long as the returned guard).
#[cfg(test)]
pub(crate) fn secret_file(value: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, value).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reference = format!("file:{}", path.display());
    (dir, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Channel>, String> {
        channels(&Config::parse(text)?)
    }

    fn slack(url: &str) -> Result<Vec<Channel>, String> {
        let (_dir, reference) = secret_file(url);
        parse(&format!(
            "[channels.s]\ntype = \"slack\"\nurl = \"{reference}\"\n"
        ))
    }

    #[test]
    fn secrets_must_come_from_env_or_file() {
        let err = parse(
            "[channels.ops]\ntype = \"webhook\"\nurl = \"https://h.example/x\"\nsecret = \"whsec_abc\"\n",
        )
        .err()
        .unwrap();
        assert!(err.starts_with("line 4: channels.ops.secret:"), "{err}");
        assert!(err.contains("env:NAME"), "{err}");
    }

    #[test]
    fn settings_of_the_other_kind_are_refused() {
        let err = parse("[channels.m]\ntype = \"email\"\nurl = \"https://x\"\n")
            .err()
            .unwrap();
        assert!(err.contains("channels.m.url: only for type"), "{err}");
        let err = parse("\n[channels.s]\ntype = \"slack\"\nurl = \"env:X\"\nto = [\"a@b.c\"]\n")
            .err()
            .unwrap();
        assert!(err.starts_with("line 5: channels.s.to:"), "{err}");
    }

    #[test]
    fn rules_and_addresses_are_checked() {
        let err = parse(
            "[channels.m]\ntype = \"email\"\nhost = \"localhost\"\nfrom = \"k@example.com\"\nto = [\"a@example.com\"]\nrules = [\"key_in_uri\"]\n",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("channels.m.rules: \"key_in_uri\" is not a rule"),
            "{err}"
        );
        let err = parse("[channels.m]\ntype = \"email\"\nhost = \"localhost\"\nfrom = \"k@example.com\"\nto = [\"not an address\"]\n")
            .err()
            .unwrap();
        assert!(err.contains("channels.m.to:"), "{err}");
        let ok = parse("[channels.m]\ntype = \"email\"\nhost = \"localhost\"\ntls = \"none\"\nfrom = \"keywatch <k@example.com>\"\nto = [\"a@example.com\", \"b@example.com\"]\nmin_severity = \"high\"\n").unwrap();
        assert_eq!(ok[0].shown(), "smtp://localhost:25");
        assert!(ok[0].routes("key_in_url", Severity::Critical));
        assert!(!ok[0].routes("key_rate_spike", Severity::Medium));
    }

    #[test]
    fn urls_are_never_shown_whole() {
        assert_eq!(
            shown_url("https://user:pw@hooks.slack.com/services/T0/B0/xyz?a=1"),
            "https://hooks.slack.com"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_settings() {
        // The fingerprint digests the settings as written (never a secret's
        // value): a different reference is a different channel.
        let a = parse("[channels.s]\ntype = \"slack\"\nurl = \"env:PATH\"\n");
        assert!(a.is_err(), "PATH is not a URL");
        let (_d1, r1) = secret_file("https://hooks.example/a");
        let (_d2, r2) = secret_file("https://hooks.example/b");
        let with =
            |r: &str| parse(&format!("[channels.s]\ntype = \"slack\"\nurl = \"{r}\"\n")).unwrap();
        assert_ne!(with(&r1)[0].fingerprint, with(&r2)[0].fingerprint);
        assert_eq!(with(&r1)[0].fingerprint, with(&r1)[0].fingerprint);
        assert!(slack("https://hooks.example/a").is_ok());
    }
}
