//! An MQTT trigger component: records each message in the default
//! key-value store as `mqtt:<topic>:<payload>`. A payload `fail` returns
//! the interface's error.
//!
//! It exports `handle-message` from the MQTT plugin's WIT, the same file
//! Ferry binds (`crates/runtime/wit/events/deps/spin-mqtt-trigger`), as the
//! plugin's `#[mqtt_component]` SDK does with wit-bindgen.

use spin_sdk::key_value::Store;

spin_sdk::wit_bindgen::generate!({
    world: "spin-mqtt",
    path: "../../../../runtime/wit/events/deps/spin-mqtt-trigger",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
});

struct Mqtt;

impl Guest for Mqtt {
    fn handle_message(message: Payload, metadata: Metadata) -> Result<(), Error> {
        let payload = String::from_utf8_lossy(&message).into_owned();
        if payload == "fail" {
            return Err(Error::Other(format!("failing on {}", metadata.topic)));
        }
        let store = Store::open_default().map_err(|e| Error::Other(format!("{e:?}")))?;
        store
            .set(&format!("mqtt:{}:{payload}", metadata.topic), b"1")
            .map_err(|e| Error::Other(format!("{e:?}")))
    }
}

export!(Mqtt);
