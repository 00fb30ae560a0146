//! An MQTT trigger component on the spin-trigger-mqtt plugin's 0.8 entry
//! point (`spin:mqtt-trigger@3.0.0`: `handle-message`, an async function
//! of the world): for each message it awaits a WASI 0.3 timer (so the call
//! really suspends), prints `mqtt3 <topic> <payload>`, and returns its
//! error value for the payload `fail`.

wit_bindgen::generate!({
    inline: r#"
        package spin:mqtt-trigger@3.0.0;

        interface spin-mqtt-types {
            variant error {
                other(string),
            }
            enum qos {
                at-most-once,
                at-least-once,
                exactly-once,
            }
            record metadata {
                topic: string,
            }
            type payload = list<u8>;
        }

        world spin-mqtt {
            use spin-mqtt-types.{error, metadata, payload};
            export handle-message: async func(message: payload, metadata: metadata) -> result<_, error>;
        }
    "#,
    world: "spin-mqtt",
});

struct Handler;

impl Guest for Handler {
    async fn handle_message(message: Vec<u8>, metadata: Metadata) -> Result<(), Error> {
        wasip3::clocks::monotonic_clock::wait_for(10_000_000).await;
        let payload = String::from_utf8_lossy(&message);
        if payload == "fail" {
            return Err(Error::Other(format!("failing on {}", metadata.topic)));
        }
        println!("mqtt3 {} {payload}", metadata.topic);
        Ok(())
    }
}

export!(Handler);

fn main() {}
