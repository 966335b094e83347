//! Small helpers shared by the examples: the broker URL, connecting, the
//! command-line options every tutorial program takes, and printing a
//! message on one line.
//!
//! This directory is not an example itself: cargo only builds
//! `examples/*.rs` and `examples/*/main.rs`; each example says `mod common;`.
#![allow(dead_code)] // not every example uses every helper

use puka::{Client, Delivery, FieldTable, FieldValue, Options, Promise};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What `run()` functions return: any error, printed as one line by [`main`].
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The broker used when neither `--url` nor `AMQP_URL` says otherwise.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long to wait for the connection handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `run` and turns an error into one line on stderr and exit code 1:
/// no panic, no backtrace for a user's mistake.
pub fn main(prog: &str, run: impl FnOnce() -> Result) {
    if let Err(e) = run() {
        eprintln!("{prog}: {e}");
        std::process::exit(1);
    }
}

/// `--url` if given, else `AMQP_URL`, else [`DEFAULT_URL`].
pub fn amqp_url(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("AMQP_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .map_or_else(|| DEFAULT_URL.to_string(), |u| u.trim().to_string())
}

/// Connects and waits for the handshake. The error names the broker with
/// the client's `params()`, whose `Display` hides the password.
pub fn connect(url: &str, name: &str) -> Result<Client> {
    connect_with(url, Options::default().connection_name(name))
}

/// As [`connect`], with [`Options`].
pub fn connect_with(url: &str, options: Options) -> Result<Client> {
    let mut client = Client::with_options(url, options)?;
    let connected = client.handshake();
    if let Err(e) = client.wait_timeout(connected, CONNECT_TIMEOUT) {
        return Err(format!("cannot connect to {}: {e}", client.params()).into());
    }
    Ok(client)
}

/// Closes the connection gracefully (queued acks are sent first).
pub fn close(mut client: Client) -> Result {
    let closed = client.close();
    client.wait_timeout(closed, Duration::from_secs(10))?;
    Ok(())
}

/// Which name a tutorial program lets the user override.
#[derive(Clone, Copy)]
pub enum Name {
    /// `--queue NAME` or `PUKA_QUEUE`.
    Queue,
    /// `--exchange NAME` or `PUKA_EXCHANGE`.
    Exchange,
}

/// The options every tutorial program takes.
pub struct Args {
    /// The broker URL (`--url`, `AMQP_URL`).
    pub url: String,
    /// The queue or exchange name (`--queue`/`--exchange`, env, default).
    pub name: String,
    /// Exit after this many messages (`--count N`).
    pub count: Option<u64>,
    /// Give up after this long (`--timeout SECS`).
    pub timeout: Option<Duration>,
    /// The remaining arguments.
    pub positional: Vec<String>,
}

impl Args {
    /// Whether `received` messages are all that `--count` asked for.
    pub fn done(&self, received: u64) -> bool {
        self.count.is_some_and(|n| received >= n)
    }

    /// When `--timeout` runs out, counted from now.
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }
}

/// Parses the command line: `--url`, `--queue`/`--exchange`, `--count`,
/// `--timeout`, `--help` (prints `usage`, exits 0), positional arguments,
/// and whatever `extra` accepts (it gets the long option's name and the
/// parser, and returns whether it took the option).
pub fn parse_args(
    usage: &str,
    name: Name,
    default_name: &str,
    extra: &mut dyn FnMut(&str, &mut lexopt::Parser) -> Result<bool>,
) -> Result<Args> {
    use lexopt::prelude::*;
    let (flag, env) = match name {
        Name::Queue => ("queue", "PUKA_QUEUE"),
        Name::Exchange => ("exchange", "PUKA_EXCHANGE"),
    };
    let mut url = None;
    let mut name = std::env::var(env).ok().filter(|n| !n.is_empty());
    let mut count = None;
    let mut timeout = None;
    let mut positional = Vec::new();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{usage}");
                std::process::exit(0);
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Long("count") => count = Some(parser.value()?.parse()?),
            Long("timeout") => timeout = Some(parse_secs(&parser.value()?.string()?)?),
            Long(f) if f == flag => name = Some(parser.value()?.string()?),
            Long(other) => {
                let other = other.to_string();
                if !extra(&other, &mut parser)? {
                    return Err(format!("invalid option '--{other}' (see --help)").into());
                }
            }
            Value(v) => positional.push(v.string()?),
            _ => return Err(unexpected(arg)),
        }
    }
    Ok(Args {
        url: amqp_url(url),
        name: name.unwrap_or_else(|| default_name.to_string()),
        count,
        timeout,
        positional,
    })
}

/// The error for an argument the program does not take.
pub fn unexpected(arg: lexopt::Arg) -> Box<dyn std::error::Error> {
    format!("{} (see --help)", arg.unexpected()).into()
}

/// Seconds as a number, fractions allowed (`--timeout 2.5`).
pub fn parse_secs(s: &str) -> Result<Duration> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("invalid number of seconds {s:?}").into()),
    }
}

/// The next delivery of `consumer`, waiting until `deadline` at most.
pub fn next_delivery(
    client: &mut Client,
    consumer: Promise<Delivery>,
    deadline: Option<Instant>,
    received: u64,
) -> Result<Delivery> {
    let result = match deadline {
        Some(d) => client.wait_timeout(consumer, d.saturating_duration_since(Instant::now())),
        None => client.wait(consumer),
    };
    match result {
        Err(puka::Error::Timeout) => {
            Err(format!("timed out after receiving {received} message(s)").into())
        }
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(format!("the consumer ended after {received} message(s)").into()),
        Err(e) => Err(e.into()),
    }
}

/// The body as text, lossily.
pub fn body_text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.body).into_owned()
}

/// One line describing a message: routing key, exchange, the properties
/// that are set, the headers, and the body (escaped, so it stays on one
/// line).
pub fn describe(d: &Delivery) -> String {
    let p = &d.properties;
    let mut line = format!(
        "routing_key={} exchange={}",
        quote(d.routing_key()),
        quote(d.exchange())
    );
    let strings = [
        ("content_type", p.content_type()),
        ("content_encoding", p.content_encoding()),
        ("correlation_id", p.correlation_id()),
        ("reply_to", p.reply_to()),
        ("expiration", p.expiration()),
        ("message_id", p.message_id()),
        ("type", p.kind()),
        ("user_id", p.user_id()),
        ("app_id", p.app_id()),
    ];
    for (key, value) in strings {
        if let Some(v) = value {
            let _ = write!(line, " {key}={}", quote(v));
        }
    }
    if let Some(mode) = p.delivery_mode() {
        let _ = write!(line, " delivery_mode={mode}");
    }
    if let Some(prio) = p.priority() {
        let _ = write!(line, " priority={prio}");
    }
    if let Some(ts) = p.timestamp() {
        let _ = write!(line, " timestamp={}", ts.0);
    }
    if let Some(h) = p.headers() {
        let _ = write!(line, " headers={}", table(h));
    }
    let _ = write!(line, " body={}", quote(&body_text(d)));
    line
}

/// `"text"` with quotes, backslashes and control characters escaped.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.escape_debug())
}

/// A field table as `{key=value, ...}`.
pub fn table(t: &FieldTable) -> String {
    let items: Vec<String> = t.iter().map(|(k, v)| format!("{k}={}", value(v))).collect();
    format!("{{{}}}", items.join(", "))
}

/// A field value: strings quoted, numbers and booleans bare.
pub fn value(v: &FieldValue) -> String {
    match v {
        FieldValue::Table(t) => table(t),
        FieldValue::Array(a) => {
            let items: Vec<String> = a.iter().map(value).collect();
            format!("[{}]", items.join(", "))
        }
        FieldValue::Void => "void".to_string(),
        _ => {
            if let Some(b) = v.as_bool() {
                b.to_string()
            } else if let Some(i) = v.as_i64() {
                i.to_string()
            } else if let Some(f) = v.as_f64() {
                f.to_string()
            } else if let Some(s) = v.as_str() {
                quote(s)
            } else if let Some(ts) = v.as_timestamp() {
                format!("timestamp:{}", ts.0)
            } else if let Some(b) = v.as_bytes() {
                format!("<{} bytes>", b.len())
            } else {
                format!("{v:?}")
            }
        }
    }
}

/// `key=value` from a flag such as `--header`.
pub fn key_value(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}").into()),
    }
}

/// A rate as `N msgs/s`, from `n` messages in `elapsed`.
pub fn rate(n: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "- msgs/s".to_string();
    }
    format!("{:.0} msgs/s", n as f64 / secs)
}

/// One summary line: `N messages, B bytes in S s, R msgs/s`.
pub fn summary(messages: u64, bytes: u64, elapsed: Duration) -> String {
    format!(
        "{messages} messages, {bytes} bytes in {:.3} s, {}",
        elapsed.as_secs_f64(),
        rate(messages, elapsed)
    )
}

/// Periodic progress lines on stderr (`--progress SECS`): each says how
/// far a run got and its average rate so far.
pub struct Progress {
    prog: &'static str,
    every: Option<Duration>,
    start: Instant,
    next: Instant,
}

impl Progress {
    /// Lines every `every` (`None`: never), counted from now.
    pub fn new(prog: &'static str, every: Option<Duration>) -> Self {
        let now = Instant::now();
        Progress {
            prog,
            every,
            start: now,
            next: every.map_or(now, |e| now + e),
        }
    }

    /// Since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// How long until the next line is due (`None`: no lines).
    pub fn until_next(&self) -> Option<Duration> {
        self.every
            .map(|_| self.next.saturating_duration_since(Instant::now()))
    }

    /// If a line is due, prints `what` and the rate of `count` messages
    /// since the start.
    pub fn tick(&mut self, count: u64, what: impl FnOnce() -> String) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if now < self.next {
            return;
        }
        eprintln!(
            "{}: {}, {}",
            self.prog,
            what(),
            rate(count, now - self.start)
        );
        self.next = now + every;
    }
}

/// `--progress SECS`: 0 turns progress lines off.
pub fn parse_progress(s: &str) -> Result<Option<Duration>> {
    let d = parse_secs(s)?;
    Ok((!d.is_zero()).then_some(d))
}

/// `--stats`: the client's counters on stderr, one line of `name=value`.
pub fn print_stats(prog: &str, client: &Client) {
    let stats = client.stats().to_string();
    let line: Vec<String> = stats.lines().map(|l| l.replacen(' ', "=", 1)).collect();
    eprintln!("{prog}: stats: {}", line.join(" "));
}
