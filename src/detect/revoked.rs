//! `revoked_key_in_use`: a key the configuration lists as revoked (by key
//! id, by prefix, or in a file of key ids) was presented at all. Usually a
//! deployment still carries the old key; if the API still accepts it, the
//! revocation never took effect.

use super::tally::{Tallies, Tally};
use super::{Detector, Finding, Severity, key_phrase};
use crate::keys::KeyId;
use crate::request::KeyedRequest;
use crate::usage::KeyLabel;

/// `extra` counts the requests the API accepted although the key is revoked.
#[derive(Default)]
pub struct RevokedKeyInUse {
    seen: Tallies<KeyId>,
}

impl Detector for RevokedKeyInUse {
    const RULE: &'static str = super::RuleId::RevokedKeyInUse.as_str();

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        let Some(key) = req.key.filter(|k| k.revoked) else {
            return;
        };
        let label = KeyLabel {
            masked: key.masked,
            name: key.name,
        };
        if let Some(t) = self
            .seen
            .get(key.id, || Tally::new(label, String::new(), req, None))
        {
            t.add(req);
            if matches!(req.rec.status, Some(200..=399)) {
                t.extra += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.seen.merge(other.seen);
    }

    fn findings(&self, names: &[String]) -> Vec<Finding> {
        self.seen
            .iter()
            .map(|(id, s)| {
                let who = key_phrase(&s.label, names);
                let times = if s.count == 1 { "once".to_string() } else { format!("{} times", s.count) };
                let (severity, message, action) = if s.extra > 0 {
                    (
                        Severity::Critical,
                        format!(
                            "revoked API key {who} was presented {times} and the API still accepted it {} of those times: the revocation has not taken effect",
                            s.extra
                        ),
                        "make the API reject the key (remove it from the key store, reload the gateway), then find and update the client still sending it",
                    )
                } else {
                    (
                        Severity::High,
                        format!("revoked API key {who} was presented {times}; a deployment still carries the old key"),
                        "find the deployment still sending the key (see the clients) and give it its new key",
                    )
                };
                Finding {
                    resolved_ms: None,
                    rule: Self::RULE,
                    severity,
                    key: Some((*id, s.label)),
                    client: s.first_client.clone(),
                    clients: s.clients.count(),
                    place: None,
                    first_ms: s.first_ms,
                    last_ms: s.last_ms,
                    count: s.count,
                    message,
                    evidence: None,
                    action,
                }
            })
            .collect()
    }
}
