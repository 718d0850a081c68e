//! `key_in_url`: an API key sent in a URL (query string or path) or carried
//! in a Referer. Such a key sits in access logs, proxy logs, browser history
//! and third-party Referer headers, and must be rotated.
//!
//! One finding per key and place, growing with each request.

use super::{Detector, Finding, Severity, key_phrase};
use crate::format::escape::printable;
use crate::hash::FastMap;
use crate::keys::{KeyId, Place};
use crate::pipeline::KeyedRequest;
use crate::usage::{Distinct, KeyLabel};

/// How many (key, place) pairs are tracked; past this, new pairs are counted
/// in `untracked` so an attacker's flood of fake keys cannot grow memory.
const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Debug)]
struct Exposed {
    label: KeyLabel,
    count: u64,
    first_ms: i64,
    last_ms: i64,
    first_client: Option<String>,
    clients: Distinct,
    evidence: Option<String>,
}

#[derive(Default)]
pub struct KeyInUrl {
    seen: FastMap<(KeyId, Place), Exposed>,
    pub untracked: u64,
}

impl Detector for KeyInUrl {
    const RULE: &'static str = "key_in_url";

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        let time = req.rec.time_ms;
        for e in req.exposures {
            let slot = (e.key.id, e.place);
            if !self.seen.contains_key(&slot) && self.seen.len() >= MAX_TRACKED {
                self.untracked += 1;
                continue;
            }
            let x = self.seen.entry(slot).or_insert_with(|| Exposed {
                label: KeyLabel {
                    masked: e.key.masked,
                    name: e.key.name,
                },
                count: 0,
                first_ms: time,
                last_ms: time,
                first_client: req.rec.client.map(|c| printable(&c.decode())),
                clients: Distinct::default(),
                evidence: req.evidence.map(|ev| match e.place {
                    Place::Referer => ev.referer.clone().unwrap_or_default(),
                    _ => ev.request.clone(),
                }),
            });
            x.count += 1;
            if time < x.first_ms {
                x.first_ms = time;
            }
            x.last_ms = x.last_ms.max(time);
            x.clients.insert(req.client);
        }
    }

    fn merge(&mut self, other: Self) {
        self.untracked += other.untracked;
        for (slot, theirs) in other.seen {
            let room = self.seen.len() < MAX_TRACKED;
            match self.seen.get_mut(&slot) {
                Some(mine) => {
                    mine.count += theirs.count;
                    if theirs.first_ms < mine.first_ms {
                        mine.first_ms = theirs.first_ms;
                        mine.first_client = theirs.first_client;
                        mine.evidence = theirs.evidence;
                    }
                    mine.last_ms = mine.last_ms.max(theirs.last_ms);
                    mine.clients.merge(&theirs.clients);
                }
                None if room => {
                    self.seen.insert(slot, theirs);
                }
                None => self.untracked += theirs.count,
            }
        }
    }

    fn findings(&self, names: &[String]) -> Vec<Finding> {
        self.seen
            .iter()
            .map(|((id, place), x)| {
                let who = key_phrase(&x.label, names);
                let (where_, severity) = match place {
                    Place::Query => ("in the query string of request URLs", Severity::Critical),
                    Place::Path => ("in the path of request URLs", Severity::Critical),
                    Place::Referer => ("in the Referer of requests (a page URL carried it)", Severity::High),
                };
                let times = if x.count == 1 { "once".to_string() } else { format!("{} times", x.count) };
                Finding {
                    resolved_ms: None,
                    rule: Self::RULE,
                    severity,
                    key: Some((*id, x.label)),
                    client: x.first_client.clone(),
                    clients: x.clients.count(),
                    place: Some(*place),
                    first_ms: x.first_ms,
                    last_ms: x.last_ms,
                    count: x.count,
                    message: format!(
                        "API key {who} was sent {where_} {times}; URLs are kept in access logs, proxy logs, browser history and Referer headers, so the key must be treated as leaked"
                    ),
                    evidence: x.evidence.clone(),
                    action: "rotate the key, then have its client send it in a header (X-API-Key or Authorization) instead of the URL",
                }
            })
            .collect()
    }
}
