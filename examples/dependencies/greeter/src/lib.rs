//! A library component: it exports `example:greeter/greet` and imports
//! nothing of its own. Any component of the app can depend on it.

wit_bindgen::generate!({ path: "../wit", world: "greeter" });

struct Greeter;

impl exports::example::greeter::greet::Guest for Greeter {
    fn greet(name: String) -> String {
        let name = if name.is_empty() { "world" } else { &name };
        format!("Hello, {name}! (from the greeter component)")
    }
}

export!(Greeter);
