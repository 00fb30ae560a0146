//! Running `wrk` and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// What one `wrk` run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub requests: u64,
    /// Non-2xx/3xx responses plus socket errors: a run with any is not a
    /// valid measurement (except an overload run, which counts them).
    pub errors: u64,
    /// Responses that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

impl WrkResult {
    /// Successful (2xx/3xx) responses per second.
    pub fn goodput(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.requests_per_sec * (self.requests - self.non_2xx.min(self.requests)) as f64
            / self.requests as f64
    }
}

/// How to load a server.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
    /// `taskset -c` list for the load generator, when it is pinned.
    pub cpus: Option<String>,
}

/// Loads `url` (with `script`, a wrk Lua script, making the requests
/// where given).
pub fn run(url: &str, script: Option<&Path>, load: &Load) -> anyhow::Result<WrkResult> {
    let mut command = crate::process::pinned(load.cpus.as_deref(), "wrk");
    command.args([
        "-t1",
        &format!("-c{}", load.connections),
        &format!("-d{}s", load.duration.as_secs().max(1)),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("--script").arg(script);
    }
    command.arg(url);
    let output = command
        .output()
        .context("running wrk (install it: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Reads the parts of wrk's report the benchmark uses.
pub fn parse(report: &str) -> anyhow::Result<WrkResult> {
    let mut requests_per_sec = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in report.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => requests_per_sec = Some(value.parse()?),
            (Some("50%"), Some(value)) => p50 = Some(parse_duration(value)?),
            (Some("99%"), Some(value)) => p99 = Some(parse_duration(value)?),
            (Some(count), Some("requests")) => requests = Some(count.parse()?),
            _ => {}
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx += rest.trim().parse::<u64>()?;
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(count) = part.split_whitespace().nth(1) {
                    socket_errors += count.parse::<u64>()?;
                }
            }
        }
    }
    Ok(WrkResult {
        requests_per_sec: requests_per_sec.context("no Requests/sec line")?,
        p50: p50.context("no 50% latency (was --latency given?)")?,
        p99: p99.context("no 99% latency (was --latency given?)")?,
        requests: requests.context("no request count")?,
        errors: non_2xx + socket_errors,
        non_2xx,
        socket_errors,
    })
}

/// wrk's durations: `381.00us`, `1.23ms`, `2.00s`, `1.50m`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in `{text}`"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("unknown unit in `{text}`"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// wrk's version line, for the report.
pub fn version() -> String {
    Command::new("wrk")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .next()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "wrk (unknown version)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
Running 8s test @ http://127.0.0.1:40000/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   391.80us   71.03us   3.41ms   92.30%
    Req/Sec    82.14k     3.02k   86.33k    80.00%
  Latency Distribution
     50%  381.00us
     75%  401.00us
     90%  430.00us
     99%    1.67ms
  653806 requests in 8.00s, 51.75MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  81725.44
Transfer/sec:      6.47MB
";

    #[test]
    fn reads_throughput_latency_and_errors() {
        let result = parse(REPORT).unwrap();
        assert_eq!(result.requests_per_sec, 81725.44);
        assert_eq!(result.p50, Duration::from_micros(381));
        assert_eq!(result.p99, Duration::from_micros(1670));
        assert_eq!(result.requests, 653806);
        assert_eq!(result.errors, 15);
        assert_eq!((result.non_2xx, result.socket_errors), (12, 3));
        // 653,806 requests, 12 of them failed.
        assert!((result.goodput() - 81725.44 * 653794.0 / 653806.0).abs() < 1e-6);
    }

    #[test]
    fn a_report_without_latencies_is_an_error() {
        let without = REPORT.replace("99%", "98%");
        let error = parse(&without).unwrap_err();
        assert!(error.to_string().contains("99%"), "{error}");
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("2.00s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.50m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("3.0ns").is_err());
    }
}
