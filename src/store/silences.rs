//! Silences: a rule muted for one key or one client until a time.

use rusqlite::params;

use super::{Store, StoreError};

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Silence {
    pub id: i64,
    pub rule: String,
    pub key_id: Option<String>,
    pub client: Option<String>,
    pub comment: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// What a silence applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key(String),
    Client(String),
}

impl Store {
    /// Adds a silence; returns its id.
    pub fn add_silence(
        &mut self,
        rule: &str,
        target: &Target,
        comment: &str,
        created_ms: i64,
        expires_ms: i64,
    ) -> Result<i64, StoreError> {
        let (key, client) = match target {
            Target::Key(k) => (Some(k.as_str()), None),
            Target::Client(c) => (None, Some(c.as_str())),
        };
        self.conn
            .execute(
                "INSERT INTO silences (rule, key_id, client, comment, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![rule, key, client, comment, created_ms, expires_ms],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Silences still in force at `now_ms` (all of them with `expired`),
    /// oldest first.
    pub fn silences(&self, now_ms: i64, expired: bool) -> Result<Vec<Silence>, StoreError> {
        self.rows(
            "SELECT id, rule, key_id, client, comment, created_ms, expires_ms FROM silences
             WHERE ?1 OR expires_ms > ?2 ORDER BY id",
            params![expired, now_ms],
            |r| {
                Ok(Silence {
                    id: r.get(0)?,
                    rule: r.get(1)?,
                    key_id: r.get(2)?,
                    client: r.get(3)?,
                    comment: r.get(4)?,
                    created_ms: r.get(5)?,
                    expires_ms: r.get(6)?,
                })
            },
        )
    }

    /// Removes a silence; false when there was none with that id.
    pub fn remove_silence(&mut self, id: i64) -> Result<bool, StoreError> {
        self.conn
            .execute("DELETE FROM silences WHERE id = ?1", params![id])
            .map(|n| n > 0)
            .map_err(self.sql())
    }

    /// Whether an alert of `rule` about this key or client is silenced at
    /// `now_ms`.
    pub fn is_silenced(
        &self,
        rule: &str,
        key_id: Option<&str>,
        client: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM silences WHERE rule = ?1 AND expires_ms > ?4
                   AND ((key_id IS NOT NULL AND key_id = ?2) OR (client IS NOT NULL AND client = ?3)))",
                params![rule, key_id, client, now_ms],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_match_their_target_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let key = "0123456789abcdef";
        let a = store
            .add_silence("key_in_url", &Target::Key(key.into()), "rotating", 0, 1_000)
            .unwrap();
        store
            .add_silence(
                "key_bruteforce",
                &Target::Client("203.0.113.9".into()),
                "pentest",
                0,
                5_000,
            )
            .unwrap();
        assert!(
            store
                .is_silenced("key_in_url", Some(key), None, 999)
                .unwrap()
        );
        assert!(
            !store
                .is_silenced("key_in_url", Some(key), None, 1_000)
                .unwrap()
        );
        assert!(
            !store
                .is_silenced("key_shared", Some(key), None, 10)
                .unwrap()
        );
        assert!(
            !store
                .is_silenced("key_in_url", Some("fedcba9876543210"), None, 10)
                .unwrap()
        );
        assert!(
            store
                .is_silenced("key_bruteforce", None, Some("203.0.113.9"), 10)
                .unwrap()
        );
        assert!(!store.is_silenced("key_bruteforce", None, None, 10).unwrap());
        assert_eq!(store.silences(2_000, false).unwrap().len(), 1);
        assert_eq!(store.silences(2_000, true).unwrap().len(), 2);
        assert!(store.remove_silence(a).unwrap());
        assert!(!store.remove_silence(a).unwrap());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.silences(0, true).unwrap().len(), 1);
    }
}
