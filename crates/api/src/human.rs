//! Sizes and durations as Ferry writes them for people, in the host's
//! output (`ferry check`, `ferry up`) and the client's alike, and text
//! from guests made safe for a terminal.

use std::time::Duration;

/// `1.5 MiB`, `12.0 KiB`, `512 B`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// `1.25 s`, `3.4 ms`.
pub fn human_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// `text` with its control characters escaped, so that whatever a guest
/// writes cannot drive the terminal of whoever reads it (move the cursor,
/// clear the screen, set the window title, hide a line behind a `\r`). C0
/// controls (but tab) and DEL become `\xNN`, C1 controls `\u{NN}`: the
/// spellings `tracing-subscriber` gives the few it escapes in the host's
/// own log. A guest's lines are escaped when they are logged, and `ferry
/// logs` escapes what it prints again with this function (a no-op on text
/// escaped already), since it cannot trust the host it talks to either.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let needs = |c: char| c.is_control() && c != '\t';
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c as u32 {
            _ if !needs(c) => escaped.push(c),
            // Writing into a String cannot fail.
            code @ 0x80..=0x9f => {
                let _ = write!(escaped, "\\u{{{code:x}}}");
            }
            code => {
                let _ = write!(escaped, "\\x{code:02x}");
            }
        }
    }
    std::borrow::Cow::Owned(escaped)
}
