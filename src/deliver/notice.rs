//! What a notice says, in each channel's format.
//!
//! An [`Alert`] is a finding as a channel sees it: owned, printable strings
//! with the key already masked and the evidence already redacted. A
//! [`Notice`] is one message about a group of alerts (same rule and key or
//! client). The renderers here turn a notice into a mail subject, a generic
//! JSON body (Alertmanager-compatible where the fields fit), or a Slack,
//! Discord or Teams message within that service's limits. Every string that
//! came from a log passes through [`super::safe`] for its destination.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::safe;
use crate::detect::Finding;
use crate::zone::Zone;

/// The version of the generic webhook body; it changes only when a field
/// changes meaning or disappears (new fields may be added at any time).
pub const SCHEMA_VERSION: u32 = 1;

/// Whether an alert's condition still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// One alert, ready to print anywhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Stable across updates and retries: derived from the rule and what the
    /// alert is about, never from counts or times.
    pub id: String,
    pub state: State,
    pub rule: String,
    pub severity: String,
    pub key_id: Option<String>,
    /// The masked key, e.g. `sk_live_…9f2a`.
    pub key: Option<String>,
    pub key_name: Option<String>,
    pub client: Option<String>,
    pub clients: u64,
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
    pub message: String,
    pub evidence: Option<String>,
    pub action: String,
}

impl Alert {
    /// The alert for a finding; `name` is the key's configured name.
    pub fn from_finding(f: &Finding, name: Option<&str>, zone: &Zone) -> Alert {
        let key_id = f.key.as_ref().map(|(id, _)| id.to_string());
        let subject = match (&key_id, &f.client) {
            (Some(k), _) => format!("key:{k}"),
            (None, Some(c)) => format!("client:{c}"),
            (None, None) => "all".to_owned(),
        };
        // A digest, not the process-seeded fast hash: the id must be the
        // same after a restart.
        let digest = Sha256::digest(format!("{}\0{subject}", f.rule).as_bytes());
        let id: String = std::iter::once("kw_".to_owned())
            .chain(digest[..10].iter().map(|b| format!("{b:02x}")))
            .collect();
        Alert {
            id,
            state: if f.resolved_ms.is_some() {
                State::Resolved
            } else {
                State::Firing
            },
            rule: f.rule.to_owned(),
            severity: f.severity.as_str().to_owned(),
            key_id,
            key: f.key.as_ref().map(|(_, l)| l.masked.to_string()),
            key_name: name.map(str::to_owned),
            client: f.client.clone(),
            clients: f.clients,
            count: f.count,
            first_seen: zone.rfc3339(f.first_ms),
            last_seen: zone.rfc3339(f.last_ms),
            resolved_at: f.resolved_ms.map(|ms| zone.rfc3339(ms)),
            message: f.message.clone(),
            evidence: f.evidence.clone(),
            action: f.action.to_owned(),
        }
    }

    /// `billing-service (sk_live_…9f2a)`, or the client, for titles.
    pub fn about(&self) -> String {
        match (&self.key_name, &self.key, &self.client) {
            (Some(n), Some(k), _) => format!("{n} ({k})"),
            (None, Some(k), _) => k.clone(),
            (_, None, Some(c)) => format!("client {c}"),
            _ => "all keys".to_owned(),
        }
    }
}

/// One message about a group of alerts of the same rule.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Stable id of this message; every attempt to deliver it carries it.
    pub id: String,
    /// The group's key, e.g. `key_in_url/key:3f9a…`.
    pub group: String,
    pub alerts: Vec<Alert>,
    /// Marks `alert-test` notices so no one acts on them.
    pub test: bool,
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A Teams message holding one Adaptive Card with these body elements.
pub fn teams_card(body: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// Why a rule's alert matters, in one sentence.
pub fn why(rule: &str) -> &'static str {
    match crate::detect::RuleId::parse(rule) {
        Some(r) => r.info().why,
        None if rule == "keywatch_test" => "it does not: this is a test of the channel.",
        None => "see the rule's documentation.",
    }
}

/// The longest evidence a notice carries, in characters.
const EVIDENCE_CHARS: usize = 1_000;

impl Notice {
    fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.state == State::Firing)
            .count()
    }

    /// `firing` while any alert of the group fires.
    pub fn state(&self) -> State {
        if self.firing() > 0 {
            State::Firing
        } else {
            State::Resolved
        }
    }

    /// The mail subject: `[FIRING:2] key_in_url billing-service (sk_live_…9f2a)`.
    /// One line, whatever the log held.
    pub fn subject(&self) -> String {
        let head = match self.state() {
            State::Firing => format!("[FIRING:{}]", self.firing()),
            State::Resolved => "[RESOLVED]".to_owned(),
        };
        let test = if self.test { "[TEST] " } else { "" };
        let first = self.alerts.first();
        let rule = first.map_or("", |a| a.rule.as_str());
        let about = first.map(Alert::about).unwrap_or_default();
        let more = match self.alerts.len() {
            0 | 1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        safe::one_line(format!("{test}{head} {rule} {about}{more}").as_bytes(), 200)
    }

    /// The generic JSON body: Alertmanager's webhook fields (`version`,
    /// `status`, `groupKey`, `alerts[].labels/annotations/startsAt/endsAt/
    /// fingerprint`) so existing receivers work, plus keywatch's own
    /// `schema` and `id`.
    pub fn generic(&self) -> Value {
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "status": a.state,
                    "labels": {
                        "alertname": a.rule,
                        "rule": a.rule,
                        "severity": a.severity,
                        "key_id": a.key_id,
                        "key": a.key,
                        "key_name": a.key_name,
                        "client": a.client,
                    },
                    "annotations": {
                        "summary": format!("{} {}", a.rule, a.about()),
                        "description": a.message,
                        "evidence": a.evidence.as_deref().map(|e| safe::truncate(e, EVIDENCE_CHARS)),
                        "action": a.action,
                    },
                    "startsAt": a.first_seen,
                    "endsAt": a.resolved_at,
                    "lastSeen": a.last_seen,
                    "count": a.count,
                    "clients": a.clients,
                    "fingerprint": a.id,
                })
            })
            .collect();
        json!({
            "schema": format!("keywatch.alert.v{SCHEMA_VERSION}"),
            "version": "4",
            "id": self.id,
            "test": self.test,
            "status": self.state(),
            "groupKey": self.group,
            "receiver": "keywatch",
            "alerts": alerts,
        })
    }

    /// Lines describing one alert, each value escaped by `esc`.
    fn lines(&self, a: &Alert, esc: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut lines = vec![
            format!("{} ({}) — {}", a.rule, a.severity, a.state.as_str()),
            format!("Key: {}", esc(&a.about())),
            esc(&a.message),
            format!(
                "Since {} · last {} · {}",
                a.first_seen,
                a.last_seen,
                plural(a.count, "time")
            ),
        ];
        if let Some(c) = &a.client {
            lines.push(format!("From {} ({})", esc(c), plural(a.clients, "client")));
        }
        if let Some(e) = &a.evidence {
            lines.push(format!(
                "Evidence: {}",
                esc(&safe::truncate(e, EVIDENCE_CHARS))
            ));
        }
        lines.push(format!("Why it matters: {}", why(&a.rule)));
        lines.push(format!("What to do: {}", esc(&a.action)));
        lines
    }

    /// The plain-text mail part. Each log-derived value stays on its one
    /// line: line breaks and controls in it are shown escaped.
    pub fn text(&self) -> String {
        let esc = |s: &str| safe::plain(s.as_bytes(), EVIDENCE_CHARS + 200);
        let mut out = String::new();
        if self.test {
            out.push_str(
                "TEST NOTICE from keywatch alert-test: nothing happened; no action needed.\n\n",
            );
        }
        out.push_str(&self.subject());
        out.push_str("\n\n");
        for a in &self.alerts {
            for l in self.lines(a, &esc) {
                out.push_str(&l);
                out.push('\n');
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "Notice {} · group {}\n",
            self.id,
            esc(&self.group)
        ));
        out
    }

    /// The HTML mail part: every value escaped for HTML, no script, no
    /// remote content.
    pub fn html(&self) -> String {
        let esc =
            |s: &str| safe::html(&safe::plain(s.as_bytes(), EVIDENCE_CHARS + 200)).into_owned();
        let mut out = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">",
        );
        if self.test {
            out.push_str("<p><strong>TEST NOTICE</strong> from keywatch alert-test: nothing happened; no action needed.</p>");
        }
        out.push_str(&format!("<h2>{}</h2>", safe::html(&self.subject())));
        for a in &self.alerts {
            let mut lines = self.lines(a, &esc).into_iter();
            if let Some(head) = lines.next() {
                out.push_str(&format!("<h3>{head}</h3><ul>"));
            }
            for l in lines {
                out.push_str(&format!("<li>{l}</li>"));
            }
            out.push_str("</ul>");
        }
        out.push_str(&format!(
            "<p style=\"color:#666\">Notice {} · group {}</p></body></html>",
            safe::html(&self.id),
            esc(&self.group)
        ));
        out
    }

    /// A Slack message: `text` for notifications plus one section block per
    /// alert (a section holds at most 3,000 characters; a message at most 50
    /// blocks).
    pub fn slack(&self) -> Value {
        let title = safe::slack(&self.subject());
        // A mrkdwn section, not a `header` block: plain_text cannot be
        // escaped, and the subject holds log-derived names.
        let mut blocks = vec![json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": safe::truncate(&format!("*{title}*"), 3_000)},
        })];
        for a in self.alerts.iter().take(48) {
            let body = self.lines(a, &|s| safe::slack(s)).join("\n");
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": safe::truncate(&body, 3_000)},
            }));
        }
        json!({ "text": safe::truncate(&title, 3_000), "blocks": blocks })
    }

    /// A Discord message: one embed per alert (at most 10; title 256,
    /// description 4,096 characters) and no mention allowed to ping anyone.
    pub fn discord(&self) -> Value {
        let embeds: Vec<Value> = self
            .alerts
            .iter()
            .take(10)
            .map(|a| {
                let body = self.lines(a, &safe::markdown).join("\n");
                json!({
                    "title": safe::truncate(&safe::markdown(&format!("{} {}", a.rule, a.about())), 256),
                    "description": safe::truncate(&body, 4_096),
                    "color": if a.state == State::Firing { 0xd0_30_30 } else { 0x30_a0_50 },
                })
            })
            .collect();
        json!({
            "content": safe::truncate(&safe::markdown(&self.subject()), 2_000),
            "embeds": embeds,
            "allowed_mentions": {"parse": []},
        })
    }

    /// A Microsoft Teams message (an Adaptive Card, as Teams workflows
    /// accept), kept well under Teams' 28 KB message limit.
    pub fn teams(&self) -> Value {
        let mut body = vec![json!({
            "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
            "text": safe::markdown(&self.subject()),
        })];
        let mut budget = 20_000usize;
        for a in &self.alerts {
            let text =
                safe::truncate(&self.lines(a, &safe::markdown).join("\n\n"), 4_000).into_owned();
            if text.len() > budget {
                body.push(json!({"type": "TextBlock", "wrap": true, "text": "(more alerts cut to fit the message)"}));
                break;
            }
            budget -= text.len();
            body.push(json!({"type": "TextBlock", "wrap": true, "text": text}));
        }
        teams_card(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;

    fn finding(client: &str, count: u64) -> Finding {
        Finding {
            rule: "auth_failure_burst",
            severity: Severity::Medium,
            key: None,
            client: Some(client.to_owned()),
            clients: 1,
            place: None,
            first_ms: 1_764_316_800_000,
            last_ms: 1_764_316_860_000 + count as i64,
            count,
            message: "many rejected requests".into(),
            evidence: None,
            action: "block the client",
            resolved_ms: None,
        }
    }

    fn hostile() -> Alert {
        let utc = Zone::parse("UTC").unwrap();
        let mut a = Alert::from_finding(&finding("203.0.113.7", 40), None, &utc);
        a.key = Some("sk_live_…9f2a".into());
        a.key_name = Some("billing\r\nBcc: x@example.com <!channel> @everyone".into());
        a.message = "<script>alert(1)</script> **bold** <@&123>".into();
        a.evidence = Some(format!("/v1?api_key=[REDACTED]&q={}", "A".repeat(50_000)));
        a
    }

    fn notice(alerts: Vec<Alert>) -> Notice {
        Notice {
            id: "n_1".into(),
            group: "auth_failure_burst/client:203.0.113.7".into(),
            alerts,
            test: false,
        }
    }

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        let utc = Zone::parse("UTC").unwrap();
        let a = Alert::from_finding(&finding("203.0.113.7", 5), None, &utc);
        let b = Alert::from_finding(&finding("203.0.113.7", 500), None, &utc);
        let c = Alert::from_finding(&finding("203.0.113.8", 5), None, &utc);
        assert_eq!(a.id, b.id, "counts and times must not change the id");
        assert_ne!(a.id, c.id);
        // Fixed across processes and releases: receivers drop repeats by it.
        assert_eq!(a.id, {
            let d = Sha256::digest(b"auth_failure_burst\0client:203.0.113.7");
            format!(
                "kw_{}",
                d[..10]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        });
        assert_eq!(a.state, State::Firing);
    }

    #[test]
    fn subject_is_one_safe_line() {
        let mut n = notice(vec![hostile(), hostile()]);
        let s = n.subject();
        assert!(
            s.starts_with("[FIRING:2] auth_failure_burst billing"),
            "{s}"
        );
        assert!(s.ends_with("and 1 more"), "{s}");
        assert!(!s.contains('\r') && !s.contains('\n'));
        n.test = true;
        assert!(n.subject().starts_with("[TEST] [FIRING:2]"));
        for a in &mut n.alerts {
            a.state = State::Resolved;
        }
        assert!(n.subject().contains("[RESOLVED]"));
    }

    #[test]
    fn generic_body_is_alertmanager_shaped() {
        let v = notice(vec![hostile()]).generic();
        assert_eq!(v["schema"], "keywatch.alert.v1");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "auth_failure_burst");
        assert!(a["fingerprint"].as_str().unwrap().starts_with("kw_"));
        let ev = a["annotations"]["evidence"].as_str().unwrap();
        assert!(ev.chars().count() <= EVIDENCE_CHARS && ev.ends_with("cut]"));
    }

    #[test]
    fn chat_formats_neutralise_mentions_and_fit_limits() {
        let n = notice(vec![hostile(); 60]);
        let slack = n.slack().to_string();
        assert!(!slack.contains("<!channel>") && !slack.contains("<script>"));
        assert!(!slack.contains("@everyone"));
        assert!(n.slack()["blocks"].as_array().unwrap().len() <= 50);
        for b in n.slack()["blocks"].as_array().unwrap() {
            assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 3_000);
        }

        let d = n.discord();
        assert_eq!(d["allowed_mentions"]["parse"], json!([]));
        assert!(d["embeds"].as_array().unwrap().len() <= 10);
        assert!(d["content"].as_str().unwrap().chars().count() <= 2_000);
        for e in d["embeds"].as_array().unwrap() {
            assert!(e["title"].as_str().unwrap().chars().count() <= 256);
            assert!(e["description"].as_str().unwrap().chars().count() <= 4_096);
        }
        assert!(!d.to_string().contains("@everyone"));

        let t = n.teams().to_string();
        assert!(t.len() < 28_000, "{} bytes", t.len());
        assert!(t.contains("more alerts cut"));
        assert!(!t.contains("<@&123>"));
    }
}
