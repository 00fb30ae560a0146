//! The Redis key-value backend: every store of every app in one Redis
//! database, each under a key prefix of its own.
//!
//! The prefix is `ferry:<length of app name>:<app name>:<label>:`: the
//! length keeps app names containing `:` from running into one another, and
//! labels cannot contain `:`. Counters are Redis integers (`INCRBY`), as
//! Spin's Redis backend stores them; compare-and-swap is one Lua script, so
//! it is atomic without `WATCH` (which a shared, multiplexed connection
//! cannot use). Durability is the server's: configure `appendfsync` as the
//! data deserves.

use std::sync::Arc;

use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;

use crate::{Error, KeyValue, check_entry};

/// One Redis server (one `redis://` URL).
#[derive(Clone)]
pub struct RedisDatabase {
    connection: ConnectionManager,
}

impl RedisDatabase {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`); the
    /// connection reconnects by itself if the server goes away.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let connection = client.get_connection_manager().await.map_err(redis_error)?;
        Ok(Self { connection })
    }

    /// The store `label` of app `app`.
    pub fn store(&self, app: &str, label: &str) -> Arc<dyn KeyValue> {
        Arc::new(RedisStore {
            connection: self.connection.clone(),
            prefix: format!("ferry:{}:{app}:{label}:", app.len()),
        })
    }
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::Backend(e.to_string())
}

struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    fn key(&self, key: &str) -> Result<String, Error> {
        check_entry(key, None)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// The prefix as a `SCAN MATCH` pattern: glob characters escaped.
    fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

/// Sets KEYS[1] to ARGV[3] if its value is ARGV[2] (ARGV[1] = "1") or it is
/// absent (ARGV[1] = "0"); 1 if it did.
const COMPARE_AND_SWAP: &str = r#"
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

#[async_trait::async_trait]
impl KeyValue for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = self.key(key)?;
        self.connection.clone().get(key).await.map_err(redis_error)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect::<Result<_, _>>()?;
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&full)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error)?;
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn exists(&self, key: &str) -> Result<bool, Error> {
        let key = self.key(key)?;
        self.connection
            .clone()
            .exists(key)
            .await
            .map_err(redis_error)
    }

    async fn keys(&self) -> Result<Vec<String>, Error> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.pattern())
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            keys.extend(
                page.into_iter()
                    .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn keys_page(&self, after: Option<String>, limit: usize) -> Result<Vec<String>, Error> {
        Ok(self
            .keys()
            .await?
            .into_iter()
            .filter(|k| after.as_ref().is_none_or(|after| k > after))
            .take(limit)
            .collect())
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("MSET");
        for (key, value) in &entries {
            check_entry(key, Some(value))?;
            command.arg(self.key(key)?).arg(value);
        }
        command
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(redis_error)
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect::<Result<_, _>>()?;
        self.connection
            .clone()
            .del::<_, ()>(full)
            .await
            .map_err(redis_error)
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        let full = self.key(&key)?;
        self.connection
            .clone()
            .incr(full, delta)
            .await
            .map_err(|e| match e.detail().unwrap_or_default() {
                detail if detail.contains("overflow") => Error::Overflow(key.clone()),
                detail if detail.contains("not an integer") => Error::NotACounter(key.clone()),
                _ => redis_error(e),
            })
    }

    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, Error> {
        check_entry(&key, Some(&new))?;
        let full = self.key(&key)?;
        let swapped: i64 = redis::Script::new(COMPARE_AND_SWAP)
            .key(full)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error)?;
        Ok(swapped == 1)
    }
}
