//! `revoked_key_in_use`: a key the configuration lists as revoked (by key
//! id, by prefix, or in a file of key ids) was presented at all. Usually a
//! deployment still carries the old key; if the API still accepts it, the
//! revocation never took effect.

use super::{Detector, Finding, Severity, key_phrase};
use crate::format::escape::printable;
use crate::hash::FastMap;
use crate::keys::KeyId;
use crate::pipeline::KeyedRequest;
use crate::usage::{Distinct, KeyLabel};

/// How many revoked keys are tracked (the list is the configuration's, so
/// this bounds only a misconfiguration such as a prefix matching every key).
const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Debug)]
struct Seen {
    label: KeyLabel,
    count: u64,
    /// Requests the API answered with 2xx or 3xx: the revocation is not enforced.
    accepted: u64,
    first_ms: i64,
    last_ms: i64,
    first_client: Option<String>,
    clients: Distinct,
}

#[derive(Default)]
pub struct RevokedKeyInUse {
    seen: FastMap<KeyId, Seen>,
    pub untracked: u64,
}

impl Detector for RevokedKeyInUse {
    const RULE: &'static str = "revoked_key_in_use";

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        let Some(key) = req.key.filter(|k| k.revoked) else {
            return;
        };
        if !self.seen.contains_key(&key.id) && self.seen.len() >= MAX_TRACKED {
            self.untracked += 1;
            return;
        }
        let t = req.rec.time_ms;
        let s = self.seen.entry(key.id).or_insert_with(|| Seen {
            label: KeyLabel {
                masked: key.masked,
                name: key.name,
            },
            count: 0,
            accepted: 0,
            first_ms: t,
            last_ms: t,
            first_client: req.rec.client.map(|c| printable(&c.decode())),
            clients: Distinct::default(),
        });
        s.count += 1;
        if matches!(req.rec.status, Some(200..=399)) {
            s.accepted += 1;
        }
        if t < s.first_ms {
            s.first_ms = t;
        }
        s.last_ms = s.last_ms.max(t);
        s.clients.insert(req.client);
    }

    fn merge(&mut self, other: Self) {
        self.untracked += other.untracked;
        for (id, theirs) in other.seen {
            let room = self.seen.len() < MAX_TRACKED;
            match self.seen.get_mut(&id) {
                Some(mine) => {
                    mine.count += theirs.count;
                    mine.accepted += theirs.accepted;
                    if theirs.first_ms < mine.first_ms {
                        mine.first_ms = theirs.first_ms;
                        mine.first_client = theirs.first_client;
                    }
                    mine.last_ms = mine.last_ms.max(theirs.last_ms);
                    mine.clients.merge(&theirs.clients);
                }
                None if room => {
                    self.seen.insert(id, theirs);
                }
                None => self.untracked += theirs.count,
            }
        }
    }

    fn findings(&self, names: &[String]) -> Vec<Finding> {
        self.seen
            .iter()
            .map(|(id, s)| {
                let who = key_phrase(&s.label, names);
                let times = if s.count == 1 { "once".to_string() } else { format!("{} times", s.count) };
                let (severity, message, action) = if s.accepted > 0 {
                    (
                        Severity::Critical,
                        format!(
                            "revoked API key {who} was presented {times} and the API still accepted it {} of those times: the revocation has not taken effect",
                            s.accepted
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
