//! A cron component: records each tick in the default key-value store as
//! `tick:<scheduled time, s>` = `<when it ran, ms since the epoch>`.
//!
//! It exports `handle-cron-event` from the cron plugin's WIT, the same file
//! Ferry binds (`crates/runtime/wit/events/deps/spin-cron`), as the plugin's
//! `#[cron_component]` SDK does with wit-bindgen.

use spin_sdk::key_value::Store;

spin_sdk::wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../../../runtime/wit/events/deps/spin-cron",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        let ran = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| Error::Other(e.to_string()))?
            .as_millis();
        let store = Store::open_default().map_err(|e| Error::Other(format!("{e:?}")))?;
        store
            .set(
                &format!("tick:{}", metadata.timestamp),
                ran.to_string().as_bytes(),
            )
            .map_err(|e| Error::Other(format!("{e:?}")))?;
        Ok(())
    }
}

export!(Tick);
