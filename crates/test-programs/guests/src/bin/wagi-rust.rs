//! A WAGI guest in Rust (wasm32-wasip1): prints its argv, environment and
//! stdin as a CGI response.

use std::io::Read as _;

fn main() {
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin).expect("stdin");
    let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    vars.sort();
    print!("Content-Type: text/plain\r\nX-Guest: wagi-rust\r\n\r\n");
    println!("args: {:?}", std::env::args().collect::<Vec<_>>());
    for var in vars {
        println!("{var}");
    }
    print!("stdin: {stdin}");
}
