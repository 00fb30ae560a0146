//! A component *dependency*: a library component, not an HTTP handler, that
//! exports `ferry:compose/greet` and `ferry:compose/probe` (world `dep` in
//! `wit/compose.wit`) for `compose-app` to import. `probe` makes the
//! dependency use capabilities of its own (an outgoing request, its
//! environment), so that tests can check what a dependency is granted apart
//! from the app that imports it. It has no `main`, but like every bin built
//! for wasm32-wasip2 it still exports `wasi:cli/run` (wasi-libc's
//! `crt1-command.o` defines that export); nothing calls it.

#![no_main]

#[path = "../compose.rs"]
mod compose;

wit_bindgen::generate!({ world: "dep" });

struct Dep;

impl exports::ferry::compose::greet::Guest for Dep {
    fn greet(name: String) -> String {
        format!("hello, {name}, from the dependency")
    }
}

impl exports::ferry::compose::probe::Guest for Dep {
    fn outbound(url: String) -> Result<u16, String> {
        compose::get(&url)
    }

    fn env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn hold(mib: u32) -> bool {
        compose::hold(mib)
    }
}

export!(Dep);
