//! Paths to the test guests, built from source by this crate's build script.
//!
//! - [`HTTP_GUEST`]: a wasi:http component (Rust, wasm32-wasip2) with one
//!   behaviour per path; see `guests/src/bin/http-guest.rs`.
//! - [`HTTP_P3_GUEST`]: a WASI 0.3 `wasi:http/service` component (Rust,
//!   wasip3 crate); see `guests/src/bin/http-p3-guest.rs`.
//! - [`WAGI_RUST`]: a WAGI module in Rust (wasm32-wasip1).
//! - [`WAGI_C`]: a WAGI module in C (clang + wasi-libc); see `c/cgi.c`.
//! - [`HELLO`]: the benchmark's wasi:http hello world (Rust, 73 KB, built for
//!   size); see `guests/src/bin/hello.rs`.
//! - [`WAGI_HELLO_C`]: the benchmark's WAGI hello world in C; see `c/hello.c`.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
