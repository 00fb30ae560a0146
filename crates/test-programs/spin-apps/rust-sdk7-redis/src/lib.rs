//! A Redis trigger component on spin-sdk 7 (`#[redis_subscriber]`, an
//! async `spin:redis/inbound-redis@3.0.0` export, so a WASI 0.3 guest):
//! each message `<key>=<value>` is written back to the Redis server named
//! by the `redis_address` variable through spin-sdk 7's async outbound
//! Redis (`spin:redis/redis@3.0.0`) as `sdk7:<key>`, and counted in the
//! app's key-value store (`fermyon`-free `spin:key-value@3.0.0`).

use spin_sdk::key_value::Store;
use spin_sdk::redis::Connection;
use spin_sdk::redis_subscriber;

#[redis_subscriber]
async fn on_message(message: bytes::Bytes) -> anyhow::Result<()> {
    let text = String::from_utf8(message.to_vec())?;
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("not key=value: {text}"))?;
    let address = spin_sdk::variables::get("redis_address").await?;
    let connection = Connection::open(&address).await?;
    connection.set(format!("sdk7:{key}"), value).await?;
    let store = Store::open_default().await?;
    store.set(&format!("seen:{key}"), b"1").await?;
    Ok(())
}
