//! `keywatch silence add|list|remove`: mute one rule for one key or client.

use std::io::Write;
use std::time::Duration;

use super::{Common, Failure, Setup, ensure_dir};
use crate::detect::RULE_IDS;
use crate::store::Store;
use crate::store::silences::Target;

pub enum Action {
    Add {
        rule: String,
        key: Option<String>,
        client: Option<String>,
        duration: Duration,
        comment: String,
    },
    List {
        all: bool,
        json: bool,
    },
    Remove {
        id: i64,
    },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn run(common: &Common, action: Action, out: &mut dyn Write) -> Result<(), Failure> {
    let setup = Setup::load(common)?;
    ensure_dir(&setup.state_dir)?;
    let mut store = Store::open(&setup.state_dir).map_err(|e| Failure::Io(e.to_string()))?;
    let io = |e: std::io::Error| Failure::Io(format!("standard output: {e}"));
    let db = |e: crate::store::StoreError| Failure::Io(e.to_string());
    match action {
        Action::Add {
            rule,
            key,
            client,
            duration,
            comment,
        } => {
            if !RULE_IDS.contains(&rule.as_str()) {
                return Err(Failure::Usage(format!(
                    "--rule {rule:?}: not a rule; one of {}",
                    RULE_IDS.join(", ")
                )));
            }
            let target = match (key, client) {
                (Some(k), None) => {
                    k.parse::<crate::keys::KeyId>().map_err(|_| {
                        Failure::Usage(format!(
                            "--key {k:?}: not a key id (16 hex characters, as findings and `summary` show them)"
                        ))
                    })?;
                    Target::Key(k.to_ascii_lowercase())
                }
                (None, Some(c)) => {
                    let ip: std::net::IpAddr = c.parse().map_err(|_| {
                        Failure::Usage(format!("--client {c:?}: not an IP address"))
                    })?;
                    Target::Client(ip.to_string())
                }
                _ => {
                    return Err(Failure::Usage(
                        "silence add: give exactly one of --key KEYID or --client IP".into(),
                    ));
                }
            };
            let now = now_ms();
            let until = now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let id = store
                .add_silence(&rule, &target, &comment, now, until)
                .map_err(db)?;
            writeln!(
                out,
                "silence {id}: {rule} for {} until {}",
                match &target {
                    Target::Key(k) => format!("key {k}"),
                    Target::Client(c) => format!("client {c}"),
                },
                setup.zone.rfc3339(until)
            )
            .map_err(io)?;
        }
        Action::List { all, json } => {
            let list = store.silences(now_ms(), all).map_err(db)?;
            if json {
                for s in &list {
                    let v = serde_json::json!({
                        "id": s.id,
                        "rule": s.rule,
                        "key_id": s.key_id,
                        "client": s.client,
                        "comment": s.comment,
                        "created_at": setup.zone.rfc3339(s.created_ms),
                        "expires_at": setup.zone.rfc3339(s.expires_ms),
                    });
                    writeln!(out, "{v}").map_err(io)?;
                }
            } else if list.is_empty() {
                writeln!(out, "no silences").map_err(io)?;
            } else {
                for s in &list {
                    let target = s
                        .key_id
                        .as_deref()
                        .map(|k| format!("key {k}"))
                        .or_else(|| s.client.as_deref().map(|c| format!("client {c}")))
                        .unwrap_or_default();
                    let comment = crate::deliver::safe::one_line(s.comment.as_bytes(), 200);
                    writeln!(
                        out,
                        "{:>4}  {:<24} {:<28} until {}  {comment}",
                        s.id,
                        s.rule,
                        target,
                        setup.zone.rfc3339(s.expires_ms)
                    )
                    .map_err(io)?;
                }
            }
        }
        Action::Remove { id } => {
            if !store.remove_silence(id).map_err(db)? {
                return Err(Failure::Usage(format!(
                    "silence {id}: no such silence; `keywatch silence list --all` shows them"
                )));
            }
            writeln!(out, "silence {id} removed").map_err(io)?;
        }
    }
    out.flush().map_err(io)
}
