//! Alert state in the store: each alert's latest status (for `keywatch
//! alerts`), what each channel last told about each group (so a restart
//! neither repeats nor forgets a notice), and channels a receiver disabled.

use rusqlite::{Transaction, params};

use super::{Store, StoreError, outbox};
use crate::alert::{AlertRow, Evaluation, GroupRow, Status};

/// A channel a receiver turned off (HTTP 410) until its settings change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Disabled {
    pub channel: String,
    /// The channel's settings fingerprint when it was disabled.
    pub fingerprint: String,
    pub disabled_ms: i64,
    pub reason: String,
}

/// Writes one evaluation's notices, alert states and group records.
pub(super) fn save(tx: &Transaction<'_>, e: &Evaluation) -> rusqlite::Result<()> {
    outbox::enqueue(tx, &e.notices)?;
    for row in &e.alerts {
        let body = serde_json::to_string(&row.alert).unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO alerts (id, rule, status, body, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, body = excluded.body,
               updated_ms = excluded.updated_ms",
        )?
        .execute(params![
            row.alert.id,
            row.alert.rule,
            row.status.as_str(),
            body,
            row.updated_ms
        ])?;
    }
    for g in &e.groups {
        match &g.state {
            Some(state) => {
                let text = serde_json::to_string(state).unwrap_or_default();
                tx.prepare_cached(
                    "INSERT INTO alert_groups (channel, grp, state) VALUES (?1, ?2, ?3)
                     ON CONFLICT(channel, grp) DO UPDATE SET state = excluded.state",
                )?
                .execute(params![g.channel, g.group, text])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM alert_groups WHERE channel = ?1 AND grp = ?2")?
                    .execute(params![g.channel, g.group])?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Commits an evaluation on its own (no log state with it: `scan --alert`).
    pub fn save_alerts(&mut self, e: &Evaluation) -> Result<(), StoreError> {
        let sql = self.sql();
        let tx = self.conn.transaction().map_err(&sql)?;
        save(&tx, e).map_err(&sql)?;
        tx.commit().map_err(sql)
    }

    /// Every stored group record, to resume the alerter.
    pub fn alert_groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        self.rows(
            "SELECT channel, grp, state FROM alert_groups ORDER BY channel, grp",
            [],
            |r| {
                let text: String = r.get(2)?;
                Ok(GroupRow {
                    channel: r.get(0)?,
                    group: r.get(1)?,
                    state: serde_json::from_str(&text).ok(),
                })
            },
        )
    }

    /// The most recently changed alerts, newest first.
    pub fn alert_rows(&self, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let rows = self.rows(
            "SELECT status, body, updated_ms FROM alerts ORDER BY updated_ms DESC, id LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(status, body, updated_ms)| {
                Some(AlertRow {
                    status: Status::parse(&status),
                    alert: serde_json::from_str(&body).ok()?,
                    updated_ms,
                })
            })
            .collect())
    }

    /// Forgets alerts unchanged since `cutoff_ms` (their groups' records go
    /// when the alerter next sees nothing of them).
    pub fn prune_alerts(&mut self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM alerts WHERE updated_ms < ?1",
                params![cutoff_ms],
            )
            .map_err(self.sql())
    }

    /// Marks a channel disabled while its settings keep `fingerprint`.
    pub fn disable_channel(
        &mut self,
        channel: &str,
        fingerprint: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO disabled_channels (channel, fingerprint, disabled_ms, reason)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(channel) DO UPDATE SET fingerprint = excluded.fingerprint,
                   disabled_ms = excluded.disabled_ms, reason = excluded.reason",
                params![channel, fingerprint, now_ms, reason],
            )
            .map(drop)
            .map_err(self.sql())
    }

    /// Channels disabled by a receiver; one whose fingerprint no longer
    /// matches its settings is enabled again by [`Store::enable_channel`].
    pub fn disabled_channels(&self) -> Result<Vec<Disabled>, StoreError> {
        self.rows(
            "SELECT channel, fingerprint, disabled_ms, reason FROM disabled_channels ORDER BY channel",
            [],
            |r| {
                Ok(Disabled {
                    channel: r.get(0)?,
                    fingerprint: r.get(1)?,
                    disabled_ms: r.get(2)?,
                    reason: r.get(3)?,
                })
            },
        )
    }

    pub fn enable_channel(&mut self, channel: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM disabled_channels WHERE channel = ?1",
                params![channel],
            )
            .map(drop)
            .map_err(self.sql())
    }
}
