//! A WASI command (`[[trigger.command]]`): prints each argument on a line
//! (`arg <argument>`), then what it read from stdin (`stdin <text>`), says
//! `to stderr` on stderr, and exits with the status its last argument
//! names, if it is a number.

use std::io::Read as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for arg in &args {
        println!("arg {arg}");
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    println!("stdin {input}");
    eprintln!("to stderr");
    let status = args.last().and_then(|a| a.parse().ok()).unwrap_or(0);
    std::process::exit(status);
}
