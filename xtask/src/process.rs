//! Servers the benchmark starts, and the few things it reads about them:
//! their output lines, CPU time and resident memory. Every process is killed
//! when its handle is dropped, so an error anywhere stops everything started.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A process started by the benchmark.
pub struct Process {
    pub name: String,
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `command` with stdout read line by line and stderr written to
    /// `log` (servers log every request there; reading it through a pipe
    /// would cost the load generator's core).
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let (tx, stdout) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line that `matches`, and returns it.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) if matches(&line) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{} printed no expected line within {timeout:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!(
                        "{} exited ({status}) before printing the expected line",
                        self.name
                    )
                }
            }
        }
    }

    /// User + system CPU time of all its threads so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name (which may contain spaces) in ")".
        let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line; `after`
        // starts at field 3.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // USER_HZ is 100 on every Linux the benchmark runs on.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> anyhow::Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name} in /proc/PID/status"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kib * 1024)
        };
        // Each page counted once among the processes (and mappings) that
        // share it; 0 where the kernel has no smaps_rollup.
        let proportional = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", self.pid()))
            .ok()
            .and_then(|rollup| {
                rollup
                    .lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        Ok(Rss {
            total: field("VmRSS:")?,
            anonymous: field("RssAnon:")?,
            file: field("RssFile:")?,
            proportional,
        })
    }

    /// The process's mappings of files whose name ends with `suffix`: how
    /// many, and of how many distinct files.
    pub fn mappings_of(&self, suffix: &str) -> anyhow::Result<(usize, usize)> {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid()))?;
        let paths: Vec<&str> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|path| path.ends_with(suffix))
            .collect();
        let distinct: std::collections::BTreeSet<&str> = paths.iter().copied().collect();
        Ok((paths.len(), distinct.len()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory, and how much of it is the process's own (anonymous)
/// and how much is mapped files (for Ferry: compiled code mapped from the
/// compile cache, shared with the page cache).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub total: u64,
    pub anonymous: u64,
    pub file: u64,
    /// Proportional set size: shared pages divided among their sharers.
    pub proportional: u64,
}

/// `program` under `taskset -c cpus`, or unpinned. It runs as users run
/// servers, without backtrace capture, unless the caller sets
/// `RUST_BACKTRACE` again.
pub fn pinned(cpus: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.env_remove("RUST_BACKTRACE");
    command
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a new connection, as HTTP/1.0 so the body ends with the
/// connection and needs no chunked decoding.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    get_on(&mut stream, addr, path)
}

/// `method path` with `body` over a new connection, as HTTP/1.0.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    request_on(&mut stream, addr, method, path, body)
}

/// `method path` with `headers` (name, value) and `body` over a new
/// connection, as HTTP/1.0.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    send_on(&mut stream, addr, method, path, headers, body)
}

/// `GET path` on an already connected stream.
pub fn get_on(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> anyhow::Result<Reply> {
    request_on(stream, addr, "GET", path, b"")
}

fn request_on(
    stream: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<Reply> {
    send_on(stream, addr, method, path, &[], body)
}

fn send_on(
    stream: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Reply> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    // One write for the head and body: no delayed segment between them.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Polls `GET path` until it answers 200, for servers that print nothing
/// when ready.
pub fn wait_until_serving(
    process: &mut Process,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(reply) = get(addr, path) {
            if reply.status == 200 {
                return Ok(());
            }
            bail!("{} answered {} to GET {path}", process.name, reply.status);
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            bail!("{} exited ({status}) before serving", process.name);
        }
        if Instant::now() > deadline {
            bail!("{} did not start serving within 120 s", process.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
