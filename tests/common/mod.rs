//! Helpers shared by the integration tests. Each test file does `mod common;`.
//!
//! Only `std` is used here, so that these helpers never depend on the crate
//! under test or on extra dev-dependencies.
#![allow(dead_code)] // not every test file uses every helper

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The broker URL used by default when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker to test against: `AMQP_URL`, or [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    match std::env::var("AMQP_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => DEFAULT_AMQP_URL.to_string(),
    }
}

/// `(host, port)` of an `amqp://[user:pass@]host[:port][/vhost]` URL.
/// A deliberately simple parse: enough to find the broker's address.
/// The port defaults to 5672 (5671 for `amqps://`).
pub fn host_port(url: &str) -> (String, u16) {
    let default_port = if url.starts_with("amqps://") {
        5671
    } else {
        5672
    };
    let rest = url.split_once("//").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        // [::1]:5672
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (v6, None),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let port = port
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("bad port {p:?} in AMQP_URL {url:?}"))
        })
        .unwrap_or(default_port);
    (host.to_string(), port)
}

/// Panics with one clear line unless something accepts TCP connections at the
/// broker address from [`amqp_url`]. Tests never skip silently.
pub fn require_broker() {
    let (host, port) = host_port(&amqp_url());
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    let reachable = addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
    if !reachable {
        panic!("no AMQP broker at {host}:{port} (set AMQP_URL, or run: bash scripts/broker)");
    }
}

/// A name no other test (in this process or another) uses at the same time,
/// for queues and exchanges: `{prefix}-{pid}-{counter}-{nanos}`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Runs `rabbitmqctl ARGS...` (under `timeout 60`) and returns its stdout;
/// panics with its stderr if it fails.
///
/// The command is `$RABBITMQCTL` if set (split on whitespace, e.g.
/// `docker exec rabbit rabbitmqctl`), else `rabbitmqctl`, through `sudo -n`
/// when not running as root (Debian's wrapper only lets root or the
/// `rabbitmq` user run it).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let mut cmd: Vec<String> = match std::env::var("RABBITMQCTL") {
        Ok(s) if !s.trim().is_empty() => s.split_whitespace().map(String::from).collect(),
        _ if is_root() => vec!["rabbitmqctl".into()],
        _ => vec!["sudo".into(), "-n".into(), "rabbitmqctl".into()],
    };
    cmd.extend(args.iter().map(|a| a.to_string()));
    let shown = cmd.join(" ");
    let out = Command::new("timeout")
        .arg("60")
        .args(&cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `timeout 60 {shown}`: {e}"));
    if !out.status.success() {
        panic!(
            "`{shown}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether this process runs as root (Linux: real uid in /proc/self/status).
/// Where that file does not exist, assume root so no `sudo` is added.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(true)
}

/// Ends the whole test process with a one-line message unless the returned
/// guard is dropped within `limit`. For the few blocking calls that have no
/// timeout of their own (e.g. `Client::wait_for_all`), so a bug makes the
/// run fail instead of hang.
pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: `{what}` still blocked after {limit:?}; aborting the test run");
            std::process::exit(101);
        }
    });
    Watchdog { _tx: tx }
}

/// Disarms the [`watchdog`] when dropped.
pub struct Watchdog {
    _tx: std::sync::mpsc::Sender<()>,
}

/// This process's resident set size in bytes (Linux: `VmRSS` of
/// /proc/self/status); 0 where that is not available.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The file descriptors this process has open (Linux: /proc/self/fd), each
/// with what it refers to (e.g. `socket:[12345]`). Empty where unavailable.
pub fn open_fds() -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// As [`rabbitmqctl`], but returns the failure (status, stderr and stdout in
/// one string) instead of panicking: for `Drop` guards that may run while a
/// test unwinds.
pub fn try_rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let mut cmd: Vec<String> = match std::env::var("RABBITMQCTL") {
        Ok(s) if !s.trim().is_empty() => s.split_whitespace().map(String::from).collect(),
        _ if is_root() => vec!["rabbitmqctl".into()],
        _ => vec!["sudo".into(), "-n".into(), "rabbitmqctl".into()],
    };
    cmd.extend(args.iter().map(|a| a.to_string()));
    let shown = cmd.join(" ");
    let out = Command::new("timeout")
        .arg("60")
        .args(&cmd)
        .output()
        .map_err(|e| format!("cannot run `timeout 60 {shown}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `bash scripts/NAME ARGS...` (under `timeout 600`), echoing its
/// output; returns its stdout, or its last line of output as the error.
pub fn run_script(name: &str, args: &[&str]) -> Result<String, String> {
    let script = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let shown = format!("bash scripts/{name} {}", args.join(" "));
    let out = std::process::Command::new("timeout")
        .args(["600", "bash", &script])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with the output of the test that happened to run it.
    eprint!("{stdout}{stderr}");
    if !out.status.success() {
        let last = stderr
            .lines()
            .chain(stdout.lines())
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("(no output)");
        return Err(format!(
            "`{}` failed ({}): {}",
            shown.trim(),
            out.status,
            last.trim()
        ));
    }
    Ok(stdout.into_owned())
}

/// Runs one of the repo's broker scripts (`scripts/tls-broker`,
/// `scripts/fault-broker`), echoing its output, and returns the node name
/// it reports ("...: node NAME is up: ..."); the error is one line.
pub fn run_node_script(name: &str) -> Result<String, String> {
    let stdout = run_script(name, &[])?;
    stdout
        .lines()
        .find_map(|l| l.split_once(": node ")?.1.split_once(" is up")?.0.into())
        .map(str::to_string)
        .ok_or_else(|| format!("`bash scripts/{name}` did not say which node is up"))
}
