//! Records each Redis message it is given in the default key-value store:
//! `seen:<payload>` the first time, `dup:<payload>` if it comes again.
//! A payload starting `trap:` panics (a trap); one starting `fail:` returns
//! an error (the interface's error value); one starting `flaky:` fails the
//! first time it is seen (counted in `tries:<payload>`) and succeeds after;
//! one of the form `slow:<id>:<padding>` takes 100 ms and is recorded as
//! `slow:<id>` (a large message from a slow component).

use spin_sdk::key_value::Store;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: bytes::Bytes) -> anyhow::Result<()> {
    let payload = String::from_utf8_lossy(&message).into_owned();
    if let Some(id) = payload.strip_prefix("trap:") {
        panic!("trapping on message {id}");
    }
    if let Some(id) = payload.strip_prefix("fail:") {
        anyhow::bail!("failing on message {id}");
    }
    let payload = match payload.strip_prefix("slow:") {
        Some(rest) => {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let id = rest.split(':').next().unwrap_or_default();
            format!("slow:{id}")
        }
        None => payload,
    };
    let store = Store::open_default()?;
    if payload.starts_with("flaky:") {
        let key = format!("tries:{payload}");
        let tries = store
            .get(&key)?
            .and_then(|t| String::from_utf8(t).ok()?.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        store.set(&key, tries.to_string().as_bytes())?;
        if tries < 2 {
            anyhow::bail!("failing on try {tries} of {payload}");
        }
    }
    let seen = format!("seen:{payload}");
    if store.exists(&seen)? {
        store.set(&format!("dup:{payload}"), b"1")?;
    } else {
        store.set(&seen, b"1")?;
    }
    Ok(())
}
