//! A Redis connection read with bounds the `redis` client does not keep:
//! it reads a reply whole before anyone can look at its size, and a
//! subscriber's messages into a queue without end.
//!
//! [`Bounded`] follows RESP's framing (RESP2 and RESP3) as the bytes
//! arrive, and fails the connection, before the client has buffered
//! the reply, when one reply (or pushed message) would cost more than its
//! limit (its bytes plus [`VALUE_COST`] for each value in it) or nests
//! deeper than [`MAX_DEPTH`]. A server is the guest's choice, so it may be
//! hostile: nothing it sends reaches the client's parser unchecked.
//!
//! A [`Backlog`], shared with whoever takes what the client decoded, holds
//! reading back while more than its limit was read and not yet taken: the
//! socket then fills and the server's own limits apply (for a pub/sub
//! subscriber, Redis's `client-output-buffer-limit pubsub`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How deep a reply may nest (an array in an array …). Deeper replies come
/// only from a hostile server, and the client's parser recurses.
pub const MAX_DEPTH: usize = 32;
/// What each value of a reply costs besides its bytes: the memory the
/// client's decoded value takes (a reply of millions of tiny values is
/// small on the wire and large decoded).
pub const VALUE_COST: usize = 64;

/// A stream whose reads are checked reply by reply (see the module docs).
pub struct Bounded<S> {
    inner: S,
    framing: Framing,
    backlog: Option<Arc<Backlog>>,
    /// Why the connection failed, said again to any later read.
    failed: Option<String>,
}

impl<S> Bounded<S> {
    /// `inner`, each reply at most `max_reply` (see [`VALUE_COST`]),
    /// reading held back by `backlog` if there is one.
    pub fn new(inner: S, max_reply: usize, backlog: Option<Arc<Backlog>>) -> Self {
        Self {
            inner,
            framing: Framing::new(max_reply),
            backlog,
            failed: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = &this.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                why.clone(),
            )));
        }
        if let Some(backlog) = &this.backlog
            && backlog.full()
        {
            backlog.waker.register(cx.waker());
            // Taken meanwhile: read on.
            if backlog.full() {
                return Poll::Pending;
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        if let Err(why) = this.framing.feed(&buf.filled()[before..]) {
            // Nothing of what broke the bound reaches the client.
            buf.set_filled(before);
            if let Some(backlog) = &this.backlog {
                *backlog.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
            }
            this.failed = Some(why.clone());
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, why)));
        }
        if let Some(backlog) = &this.backlog {
            backlog.unused.fetch_add(read, Ordering::AcqRel);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Bytes a connection read that were not yet taken from its client, and
/// the most it may hold before reading waits.
pub struct Backlog {
    limit: usize,
    unused: AtomicUsize,
    waker: AtomicWaker,
    /// Why the connection failed on a bound, if it did.
    failed: std::sync::Mutex<Option<String>>,
}

impl Backlog {
    /// A backlog of at most `limit` bytes, which must be more than one
    /// reply may be: reading waits only while whole replies are queued,
    /// never in the middle of the one reply that would end the wait.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            unused: AtomicUsize::new(0),
            waker: AtomicWaker::new(),
            failed: std::sync::Mutex::new(None),
        })
    }

    /// Why the connection failed on a bound, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn full(&self) -> bool {
        self.unused.load(Ordering::Acquire) > self.limit
    }

    /// A reply of `bytes` (as sent) was taken.
    pub fn taken(&self, bytes: usize) {
        let _ = self
            .unused
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |unused| {
                Some(unused.saturating_sub(bytes))
            });
        self.waker.wake();
    }

    /// Everything decoded was taken (the client's queue is empty): what is
    /// read from now on is all that is held. Called before waiting on the
    /// queue, this keeps reading from waiting on a count that is off.
    pub fn drained(&self) {
        self.unused.store(0, Ordering::Release);
        self.waker.wake();
    }
}

/// The bytes of a RESP bulk string of `len` bytes: `$<len>\r\n…\r\n`.
pub fn bulk_bytes(len: usize) -> usize {
    1 + len.to_string().len() + 2 + len + 2
}

/// Where the bytes read so far stand in RESP's framing.
struct Framing {
    max: usize,
    /// What the reply being read has cost so far.
    cost: usize,
    /// The aggregates open around the current value, innermost last.
    open: Vec<Open>,
    state: State,
}

struct Open {
    /// Values still to come.
    left: u64,
}

enum State {
    /// In a value's header line: its type byte once read, its number so
    /// far (for the types that have one) and its sign, and whether the
    /// last byte was a `\r` (a line ends only at `\r\n`, as the client
    /// reads it).
    Line {
        kind: Option<u8>,
        number: i64,
        negative: bool,
        digits: usize,
        cr: bool,
    },
    /// In a bulk value's body: the bytes left, its `\r\n` included.
    Body(usize),
}

const NEW_LINE: State = State::Line {
    kind: None,
    number: 0,
    negative: false,
    digits: 0,
    cr: false,
};

impl Framing {
    fn new(max: usize) -> Self {
        Self {
            max,
            cost: 0,
            open: Vec::new(),
            state: NEW_LINE,
        }
    }

    fn over(&self) -> String {
        format!("a reply over Ferry's limit of {} bytes", self.max)
    }

    fn charge(&mut self, cost: usize) -> Result<(), String> {
        self.cost = self.cost.saturating_add(cost);
        if self.cost > self.max {
            return Err(self.over());
        }
        Ok(())
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if let State::Body(left) = &mut self.state {
                // Charged whole when its header was read.
                let take = (*left).min(bytes.len());
                *left -= take;
                bytes = &bytes[take..];
                if *left == 0 {
                    self.state = NEW_LINE;
                    self.value_done()?;
                }
                continue;
            }
            let byte = bytes[0];
            bytes = &bytes[1..];
            self.charge(1)?;
            let State::Line {
                kind,
                number,
                negative,
                digits,
                cr,
            } = &mut self.state
            else {
                unreachable!("a body is read above");
            };
            let Some(k) = *kind else {
                *kind = Some(byte);
                continue;
            };
            let numbered = b"$!=*~>%|".contains(&k);
            if numbered {
                // Digits (a `-` first), then `\r\n`: nothing else.
                match byte {
                    b'\n' if *cr => {
                        let n = if *negative { -*number } else { *number };
                        self.state = NEW_LINE;
                        self.line_done(k, n)?;
                    }
                    b'\r' if !*cr && *digits > 0 => *cr = true,
                    b'-' if *digits == 0 && !*negative => *negative = true,
                    b'0'..=b'9' if !*cr => {
                        *digits += 1;
                        *number = number
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(i64::from(byte - b'0')))
                            .ok_or("a reply with a length out of range")?;
                    }
                    _ => {
                        return Err(format!(
                            "not a RESP reply: {:?} in a `{}` header",
                            byte as char, k as char
                        ));
                    }
                }
            } else if byte == b'\n' && *cr {
                self.state = NEW_LINE;
                self.line_done(k, 0)?;
            } else {
                // A simple value's text: a lone `\r` or `\n` is text too,
                // as the client reads it.
                *cr = byte == b'\r';
            }
        }
        Ok(())
    }

    fn line_done(&mut self, kind: u8, n: i64) -> Result<(), String> {
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.value_done(),
            // A bulk string: `-1` is nil. (A blob error or verbatim string
            // has no nil, and the client would take `-1` as "everything".)
            b'$' if n == -1 => self.value_done(),
            b'$' | b'!' | b'=' => {
                let body = usize::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_add(2))
                    .ok_or_else(|| {
                        format!("not a RESP reply: a `{}` of length {n}", kind as char)
                    })?;
                self.charge(body)?;
                self.state = State::Body(body);
                Ok(())
            }
            // An aggregate: `-1` is nil, `0` empty.
            b'*' | b'~' | b'>' if n == -1 => self.value_done(),
            b'*' | b'~' | b'>' | b'%' if n == 0 => self.value_done(),
            b'*' | b'~' | b'>' | b'%' => {
                let n = u64::try_from(n)
                    .map_err(|_| format!("not a RESP reply: a `{}` of {n} values", kind as char))?;
                let left = if kind == b'%' { n.saturating_mul(2) } else { n };
                if self.open.len() >= MAX_DEPTH {
                    return Err(format!("a reply nested deeper than {MAX_DEPTH}"));
                }
                self.open.push(Open { left });
                Ok(())
            }
            // Attributes (`|`): no Redis command sends them, and the client
            // nests the value they describe, which this would not count.
            other => Err(format!(
                "not a RESP reply Ferry reads: a value of type {:?}",
                other as char
            )),
        }
    }

    /// A value ended: it counts for the aggregates around it, and a reply
    /// ends with its outermost value.
    fn value_done(&mut self) -> Result<(), String> {
        self.charge(VALUE_COST)?;
        while let Some(top) = self.open.last_mut() {
            top.left -= 1;
            if top.left > 0 {
                return Ok(());
            }
            self.open.pop();
        }
        self.cost = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` one at a time and all at once: the same answer.
    fn fed(max: usize, bytes: &[u8]) -> Result<usize, String> {
        let mut whole = Framing::new(max);
        let at_once = whole.feed(bytes).map(|()| whole.open.len());
        let mut split = Framing::new(max);
        let mut one_by_one = Ok(0);
        for byte in bytes {
            if let Err(e) = split.feed(std::slice::from_ref(byte)) {
                one_by_one = Err(e);
                break;
            }
        }
        let one_by_one = one_by_one.map(|_| split.open.len());
        assert_eq!(at_once, one_by_one, "{:?}", String::from_utf8_lossy(bytes));
        at_once
    }

    #[test]
    fn whole_replies_of_every_type_pass_and_end() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR unknown\r\n",
            b":-42\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"%1\r\n+k\r\n*1\r\n_\r\n",
            b"~2\r\n,1.5\r\n#t\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nbody\r\n",
            b"=8\r\ntxt:abcd\r\n!3\r\nerr\r\n(123\r\n",
            b"+a\rb\nc\r\n",
        ];
        for reply in replies {
            // Whole replies to the client's own parser, too (the last one
            // holds three).
            if !reply.starts_with(b"=8") {
                redis::parse_redis_value(reply)
                    .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(reply)));
            }
            let mut framing = Framing::new(1 << 20);
            assert_eq!(
                fed(1 << 20, reply),
                Ok(0),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
            framing.feed(reply).unwrap();
            assert_eq!(
                framing.cost,
                0,
                "{:?} ended",
                String::from_utf8_lossy(reply)
            );
        }
        // An unfinished reply is still open.
        assert_eq!(fed(1 << 20, b"*2\r\n$1\r\na\r\n"), Ok(1));
    }

    #[test]
    fn a_reply_over_the_limit_fails_at_its_header() {
        let why = fed(1000, b"$1000000000\r\n").unwrap_err();
        assert!(why.contains("limit of 1000 bytes"), "{why}");
        // Counted over the whole reply, and afresh for the next.
        let value = format!("$400\r\n{}\r\n", "x".repeat(400));
        assert!(fed(1000, format!("*3\r\n{value}{value}{value}").as_bytes()).is_err());
        assert_eq!(
            fed(1000, format!("{value}{value}{value}").as_bytes()),
            Ok(0)
        );
        // Many tiny values cost their decoded size.
        assert!(fed(1000, ":1\r\n".repeat(20).as_bytes()).is_ok());
        assert!(fed(1000, format!("*20\r\n{}", ":1\r\n".repeat(20)).as_bytes()).is_err());
    }

    #[test]
    fn deep_nesting_and_what_is_not_resp_fail() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(
            fed(1 << 20, deep.as_bytes())
                .unwrap_err()
                .contains("nested")
        );
        assert_eq!(
            fed(
                1 << 20,
                format!("{}:1\r\n", "*1\r\n".repeat(MAX_DEPTH)).as_bytes()
            ),
            Ok(0)
        );
        for bad in [&b"?x\r\n"[..], b"$1x\r\n", b"$99999999999999999999\r\n"] {
            assert!(
                fed(1 << 20, bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The client ends a line only at `\r\n`: lines ended by a lone `\n`
    /// are one reply to it, so they are one reply here, and over the limit.
    #[test]
    fn lines_end_only_at_cr_lf() {
        let endless = "+aaaa\n".repeat(1000);
        assert!(fed(1000, endless.as_bytes()).unwrap_err().contains("limit"));
        assert_eq!(fed(1000, b"+a\nb\r\n"), Ok(0));
    }

    #[test]
    fn bulk_bytes_is_what_a_bulk_string_takes() {
        for len in [0, 7, 10, 12345] {
            let sent = format!("${len}\r\n{}\r\n", "x".repeat(len));
            assert_eq!(bulk_bytes(len), sent.len());
        }
    }
}
