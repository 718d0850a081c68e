//! `key_in_url`: an API key sent in a URL (query string or path) or carried
//! in a Referer. Such a key sits in access logs, proxy logs, browser history
//! and third-party Referer headers, and must be rotated.
//!
//! One finding per key and place, growing with each request.

use super::Switch;
use crate::detect::tally::{Tallies, Tally};
use crate::detect::{Detector, Finding, RuleId, RuleInfo, Severity, key_phrase};
use crate::keys::{KeyId, Place};
use crate::request::KeyedRequest;
use crate::usage::KeyLabel;

pub const INFO: RuleInfo = RuleInfo {
    id: "key_in_url",
    title: "API key in a URL",
    why: "a key in a URL is written to access logs, proxy logs, browser history and Referer headers of other sites; treat it as leaked.",
    severity: Severity::Critical,
    action: "rotate the key, then have its client send it in a header instead of the URL",
    inhibited_by: None,
};

pub type Config = Switch;
pub(crate) use super::no_bounds as check;
pub type Plain = KeyInUrl;
pub type Ordered = ();

#[derive(Default)]
pub struct KeyInUrl {
    seen: Tallies<(KeyId, Place)>,
}

impl Detector for KeyInUrl {
    const RULE: &'static str = RuleId::KeyInUrl.as_str();

    fn observe(&mut self, req: &KeyedRequest<'_>) {
        for e in req.exposures {
            let evidence = || {
                req.evidence.map(|ev| match e.place {
                    Place::Referer => ev.referer.clone().unwrap_or_default(),
                    _ => ev.request.clone(),
                })
            };
            let label = KeyLabel {
                masked: e.key.masked,
                name: e.key.name,
            };
            if let Some(t) = self.seen.get((e.key.id, e.place), || {
                Tally::new(label, String::new(), req, evidence())
            }) {
                t.add(req);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.seen.merge(other.seen);
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
