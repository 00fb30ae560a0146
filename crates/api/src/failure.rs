//! The failures that decide the `ferry` process's exit code, raised by the
//! client, the build commands and app loading alike.

use std::fmt;

/// A failure that decides the process's exit code (the binary maps it).
#[derive(Debug)]
pub struct Failure {
    pub exit_code: u8,
    pub message: String,
}

impl Failure {
    /// A component that cannot be loaded (not a manifest syntax problem).
    pub fn load(message: String) -> Self {
        Self {
            exit_code: 3,
            message,
        }
    }

    /// The listen address could not be bound.
    pub fn bind(message: String) -> Self {
        Self {
            exit_code: 4,
            message,
        }
    }

    /// The command line names something that is not there.
    pub fn usage(message: String) -> Self {
        Self {
            exit_code: 2,
            message,
        }
    }

    /// A build command failed; `exit_code` is its own.
    pub fn build(exit_code: u8, message: String) -> Self {
        Self { exit_code, message }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
