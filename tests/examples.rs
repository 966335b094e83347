//! Runs the example programs against the real broker and checks what they
//! print and what ends up in the broker.
//!
//! The binaries are the ones `cargo test` builds before running the tests
//! (`target/<profile>/examples/NAME`, found next to this test's own binary
//! in `target/<profile>/deps/`). A binary older than its source fails the
//! test with a hint rather than testing stale code (`cargo test --test
//! examples` alone does not build the examples: run `cargo build --examples`
//! first, or plain `cargo test`).
//!
//! Every test uses queue and exchange names of its own, so they run in
//! parallel; every child process runs under a deadline and is killed if it
//! overruns.

mod common;

use puka::{Client, ExchangeDelete, QueueDeclare, QueueDelete};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one example may run before it is killed.
const DEADLINE: Duration = Duration::from_secs(30);
/// The `--timeout` given to receivers: below [`DEADLINE`], so that they
/// fail on their own with a message first.
const RECEIVER_TIMEOUT: &str = "20";

const ALL_EXAMPLES: &[&str] = &[
    "tut1_send",
    "tut1_receive",
    "tut2_new_task",
    "tut2_worker",
    "tut3_emit_log",
    "tut3_receive_logs",
    "tut4_emit_log_direct",
    "tut4_receive_logs_direct",
    "tut5_emit_log_topic",
    "tut5_receive_logs_topic",
    "tut6_rpc_server",
    "tut6_rpc_client",
    "tut7_publisher_confirms",
    "reactor",
    "cluster_failover",
    "many_clients",
    "publish",
    "consume",
    "get",
    "declare",
    "delete",
];

// ----------------------------------------------------------------------
// Finding and running the example binaries.

/// The built example `name`, checked to be newer than its sources.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/examples-xxxx -> target/<profile>/examples/NAME
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "example binary {} not found: run `cargo test` (which builds the examples) \
                 or `cargo build --examples` first",
                path.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Only the example's own sources: a file under src/ may be one that
    // the examples do not use (e.g. `#[cfg(test)]` modules), which cargo
    // then rightly does not relink them for.
    let sources = [
        root.join("examples").join(format!("{name}.rs")),
        root.join("examples/common/mod.rs"),
    ];
    for src in sources {
        let changed = std::fs::metadata(&src).and_then(|m| m.modified());
        if changed.is_ok_and(|t| t > built) {
            panic!(
                "example binary {} is older than {}: run `cargo build --examples` \
                 (or plain `cargo test`) first",
                path.display(),
                src.display()
            );
        }
    }
    path
}

fn command(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(example(name));
    cmd.args(args)
        .env("AMQP_URL", common::amqp_url())
        .env_remove("PUKA_QUEUE")
        .env_remove("PUKA_EXCHANGE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running example. Its stdout and stderr are read line by line on
/// helper threads; dropping it kills the process if it still runs.
struct Running {
    name: String,
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    /// Lines taken so far, for failure messages.
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

/// What a finished example printed.
#[derive(Debug)]
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn lines_of(pipe: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, handle)
}

fn spawn(name: &str, args: &[&str]) -> Running {
    spawn_cmd(name, command(name, args))
}

fn spawn_cmd(name: &str, mut cmd: Command) -> Running {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    let (stdout, h1) = lines_of(child.stdout.take().expect("piped stdout"));
    let (stderr, h2) = lines_of(child.stderr.take().expect("piped stderr"));
    Running {
        name: name.to_string(),
        child,
        stdout,
        stderr,
        readers: vec![h1, h2],
        started: Instant::now(),
        seen_out: Vec::new(),
        seen_err: Vec::new(),
    }
}

impl Running {
    fn deadline(&self) -> Instant {
        self.started + DEADLINE
    }

    /// Everything printed so far, for a failure message.
    fn report(&mut self) -> String {
        self.seen_out.extend(self.stdout.try_iter());
        self.seen_err.extend(self.stderr.try_iter());
        format!(
            "{}: stdout so far:\n{}\nstderr so far:\n{}",
            self.name,
            self.seen_out.join("\n"),
            self.seen_err.join("\n")
        )
    }

    fn next(&mut self, from_stderr: bool) -> String {
        let rx = if from_stderr {
            &self.stderr
        } else {
            &self.stdout
        };
        let left = self.deadline().saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if from_stderr {
                    self.seen_err.push(line.clone());
                } else {
                    self.seen_out.push(line.clone());
                }
                line
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("timed out waiting for a line; {}", self.report())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = self.child.wait();
                panic!("ended before printing the line expected; {}", self.report())
            }
        }
    }

    /// The next line on stdout.
    fn next_line(&mut self) -> String {
        self.next(false)
    }

    /// Asserts the next line on stdout.
    fn expect_line(&mut self, want: &str) {
        let got = self.next_line();
        assert_eq!(got, want, "{}: unexpected line on stdout", self.name);
    }

    /// Asserts the next line on stderr.
    fn expect_err_line(&mut self, want: &str) {
        let got = self.next(true);
        assert_eq!(got, want, "{}: unexpected line on stderr", self.name);
    }

    /// Waits for the process to exit (killing it at the deadline, then
    /// failing), and collects the rest of its output.
    fn finish(mut self) -> Finished {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= self.deadline() => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "did not exit within {DEADLINE:?}, killed; {}",
                        self.report()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("{}: wait failed: {e}", self.name),
            }
        };
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        let mut stdout = std::mem::take(&mut self.seen_out);
        stdout.extend(self.stdout.try_iter());
        let mut stderr = std::mem::take(&mut self.seen_err);
        stderr.extend(self.stderr.try_iter());
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// As [`Running::finish`], asserting exit status 0.
    fn success(self) -> Finished {
        let name = self.name.clone();
        let out = self.finish();
        assert!(
            out.status.success(),
            "{name} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout.join("\n"),
            out.stderr.join("\n")
        );
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an example to completion and asserts it succeeded.
fn run_ok(name: &str, args: &[&str]) -> Finished {
    spawn(name, args).success()
}

/// Runs an example to completion, whatever its exit status.
fn run(name: &str, args: &[&str]) -> Finished {
    spawn(name, args).finish()
}

/// Runs an example with `input` on its stdin.
fn run_with_stdin(name: &str, args: &[&str], input: &[u8]) -> Finished {
    let mut cmd = command(name, args);
    cmd.stdin(Stdio::piped());
    let mut running = spawn_cmd(name, cmd);
    let mut stdin = running.child.stdin.take().expect("piped stdin");
    stdin.write_all(input).expect("write stdin");
    drop(stdin);
    running.success()
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

// ----------------------------------------------------------------------
// Looking at the broker directly, and cleaning up.

fn client() -> Client {
    let mut c = Client::new(&common::amqp_url()).expect("client");
    let p = c.handshake();
    c.wait_timeout(p, Duration::from_secs(10)).expect("connect");
    c
}

/// Deletes queues and exchanges when dropped, so a failing test leaves
/// nothing behind.
#[derive(Default)]
struct Cleanup {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Cleanup {
    fn queue(&mut self, prefix: &str) -> String {
        let q = common::unique(prefix);
        self.queues.push(q.clone());
        q
    }

    fn exchange(&mut self, prefix: &str) -> String {
        let x = common::unique(prefix);
        self.exchanges.push(x.clone());
        x
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut c) = Client::new(&common::amqp_url()) else {
            return;
        };
        let p = c.handshake();
        if c.wait_timeout(p, Duration::from_secs(10)).is_err() {
            return;
        }
        for q in &self.queues {
            let p = c.queue_delete(QueueDelete::new(q));
            let _ = c.wait_timeout(p, Duration::from_secs(10));
        }
        for x in &self.exchanges {
            let p = c.exchange_delete(ExchangeDelete::new(x));
            let _ = c.wait_timeout(p, Duration::from_secs(10));
        }
        let p = c.close();
        let _ = c.wait_timeout(p, Duration::from_secs(10));
    }
}

// ----------------------------------------------------------------------
// Tutorial 1: hello world.

#[test]
fn tut1_hello_world() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-hello");

    let mut receiver = spawn(
        "tut1_receive",
        &["--queue", &q, "--count", "2", "--timeout", RECEIVER_TIMEOUT],
    );
    receiver.expect_line(" [*] Waiting for messages. To exit press CTRL+C");

    let sent = run_ok("tut1_send", &["--queue", &q]);
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'Hello World!'"]));
    // The queue name may come from the environment too.
    let mut cmd = command("tut1_send", &["second", "message"]);
    cmd.env("PUKA_QUEUE", &q);
    let sent = spawn_cmd("tut1_send", cmd).success();
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'second message'"]));

    let out = receiver.success();
    assert_eq!(
        out.stdout,
        strings(&[
            " [*] Waiting for messages. To exit press CTRL+C",
            " [x] Received 'Hello World!'",
            " [x] Received 'second message'",
        ])
    );
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
}

// ----------------------------------------------------------------------
// Tutorial 2: work queues.

#[test]
fn tut2_work_queue() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-tasks");

    let mut worker = spawn(
        "tut2_worker",
        &[
            "--queue",
            &q,
            "--count",
            "3",
            "--ms-per-dot",
            "20",
            "--timeout",
            RECEIVER_TIMEOUT,
        ],
    );
    worker.expect_line(" [*] Waiting for messages. To exit press CTRL+C");
    for task in ["First.", "Second..", "Third..."] {
        let sent = run_ok("tut2_new_task", &["--queue", &q, task]);
        assert_eq!(sent.stdout, vec![format!(" [x] Sent '{task}'")]);
    }
    let out = worker.success();
    assert_eq!(
        out.stdout,
        strings(&[
            " [*] Waiting for messages. To exit press CTRL+C",
            " [x] Received 'First.'",
            " [x] Done",
            " [x] Received 'Second..'",
            " [x] Done",
            " [x] Received 'Third...'",
            " [x] Done",
        ])
    );

    // What is in the broker: every task was acked, the queue is durable
    // (redeclaring it as transient is refused) and a task left there is
    // persistent.
    run_ok("tut2_new_task", &["--queue", &q, "Left over."]);
    let mut c = client();
    let p = c.basic_get(&q);
    let msg = c.wait(p).expect("get").expect("the left-over task");
    assert_eq!(msg.body_str(), Some("Left over."));
    assert!(msg.properties.is_persistent());
    assert_eq!(msg.message_count, Some(0), "the three tasks were acked");
    c.basic_ack(&msg).expect("ack");
    let p = c.queue_declare(QueueDeclare::named(&q));
    let err = c.wait(p).expect_err("the queue is durable");
    assert_eq!(err.reply_code(), Some(406), "{err}");
}

// ----------------------------------------------------------------------
// Tutorial 3: publish/subscribe.

#[test]
fn tut3_publish_subscribe() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange("ex-logs");
    let args = [
        "--exchange",
        &x,
        "--count",
        "2",
        "--timeout",
        RECEIVER_TIMEOUT,
    ];

    // Two subscribers: each gets its own copy of every message.
    let mut receivers = [
        spawn("tut3_receive_logs", &args),
        spawn("tut3_receive_logs", &args),
    ];
    for r in &mut receivers {
        r.expect_line(" [*] Waiting for logs. To exit press CTRL+C");
    }
    let sent = run_ok("tut3_emit_log", &["--exchange", &x]);
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'info: Hello World!'"]));
    let sent = run_ok(
        "tut3_emit_log",
        &["--exchange", &x, "warning:", "disk", "full"],
    );
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'warning: disk full'"]));

    for r in receivers {
        let out = r.success();
        assert_eq!(
            out.stdout,
            strings(&[
                " [*] Waiting for logs. To exit press CTRL+C",
                " [x] info: Hello World!",
                " [x] warning: disk full",
            ])
        );
    }
}

// ----------------------------------------------------------------------
// Tutorial 4: routing.

#[test]
fn tut4_routing() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange("ex-direct");
    let t = RECEIVER_TIMEOUT;

    let mut errors = spawn(
        "tut4_receive_logs_direct",
        &["--exchange", &x, "--count", "1", "--timeout", t, "error"],
    );
    let mut all = spawn(
        "tut4_receive_logs_direct",
        &[
            "--exchange",
            &x,
            "--count",
            "3",
            "--timeout",
            t,
            "info",
            "warning",
            "error",
        ],
    );
    errors.expect_line(" [*] Waiting for logs. To exit press CTRL+C");
    all.expect_line(" [*] Waiting for logs. To exit press CTRL+C");

    let sent = run_ok("tut4_emit_log_direct", &["--exchange", &x]);
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'info':'Hello World!'"]));
    run_ok(
        "tut4_emit_log_direct",
        &["--exchange", &x, "debug", "dropped"],
    );
    run_ok(
        "tut4_emit_log_direct",
        &["--exchange", &x, "warning", "careful"],
    );
    let sent = run_ok(
        "tut4_emit_log_direct",
        &["--exchange", &x, "error", "Run.", "Run."],
    );
    assert_eq!(sent.stdout, strings(&[" [x] Sent 'error':'Run. Run.'"]));

    assert_eq!(
        errors.success().stdout,
        strings(&[
            " [*] Waiting for logs. To exit press CTRL+C",
            " [x] error:Run. Run.",
        ])
    );
    assert_eq!(
        all.success().stdout,
        strings(&[
            " [*] Waiting for logs. To exit press CTRL+C",
            " [x] info:Hello World!",
            " [x] warning:careful",
            " [x] error:Run. Run.",
        ])
    );

    // Without a severity it explains, on one line.
    let out = run("tut4_receive_logs_direct", &["--exchange", &x]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
}

// ----------------------------------------------------------------------
// Tutorial 5: topics.

#[test]
fn tut5_topics() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange("ex-topic");
    let t = RECEIVER_TIMEOUT;

    let mut kern = spawn(
        "tut5_receive_logs_topic",
        &["--exchange", &x, "--count", "2", "--timeout", t, "kern.*"],
    );
    let mut critical = spawn(
        "tut5_receive_logs_topic",
        &[
            "--exchange",
            &x,
            "--count",
            "2",
            "--timeout",
            t,
            "*.critical",
        ],
    );
    let mut everything = spawn(
        "tut5_receive_logs_topic",
        &["--exchange", &x, "--count", "4", "--timeout", t, "#"],
    );
    for r in [&mut kern, &mut critical, &mut everything] {
        r.expect_line(" [*] Waiting for logs. To exit press CTRL+C");
    }

    let sent = run_ok("tut5_emit_log_topic", &["--exchange", &x]);
    assert_eq!(
        sent.stdout,
        strings(&[" [x] Sent 'anonymous.info':'Hello World!'"])
    );
    for (key, msg) in [
        ("kern.info", "booted"),
        ("kern.critical", "A critical kernel error"),
        ("app.critical", "out of memory"),
    ] {
        run_ok("tut5_emit_log_topic", &["--exchange", &x, key, msg]);
    }

    let waiting = " [*] Waiting for logs. To exit press CTRL+C";
    assert_eq!(
        kern.success().stdout,
        strings(&[
            waiting,
            " [x] kern.info:booted",
            " [x] kern.critical:A critical kernel error",
        ])
    );
    assert_eq!(
        critical.success().stdout,
        strings(&[
            waiting,
            " [x] kern.critical:A critical kernel error",
            " [x] app.critical:out of memory",
        ])
    );
    assert_eq!(
        everything.success().stdout,
        strings(&[
            waiting,
            " [x] anonymous.info:Hello World!",
            " [x] kern.info:booted",
            " [x] kern.critical:A critical kernel error",
            " [x] app.critical:out of memory",
        ])
    );
}

// ----------------------------------------------------------------------
// Tutorial 6: RPC.

fn rpc_round_trip(client_flags: &[&str]) {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-rpc");

    let mut server = spawn(
        "tut6_rpc_server",
        &["--queue", &q, "--count", "2", "--timeout", RECEIVER_TIMEOUT],
    );
    server.expect_line(" [x] Awaiting RPC requests");

    let mut args = vec!["--queue", q.as_str(), "--timeout", RECEIVER_TIMEOUT];
    args.extend_from_slice(client_flags);
    let out = run_ok("tut6_rpc_client", &args);
    assert_eq!(
        out.stdout,
        strings(&[" [x] Requesting fib(30)", " [.] Got 832040"])
    );
    args.push("10");
    let out = run_ok("tut6_rpc_client", &args);
    assert_eq!(
        out.stdout,
        strings(&[" [x] Requesting fib(10)", " [.] Got 55"])
    );

    assert_eq!(
        server.success().stdout,
        strings(&[" [x] Awaiting RPC requests", " [.] fib(30)", " [.] fib(10)"])
    );
}

/// The tutorial's client: replies through direct reply-to (the request is
/// published on the channel that consumes from `amq.rabbitmq.reply-to`).
#[test]
fn tut6_rpc_direct_reply_to() {
    rpc_round_trip(&[]);
}

/// The same with a server-named exclusive callback queue.
#[test]
fn tut6_rpc_callback_queue() {
    rpc_round_trip(&["--callback-queue"]);
}

// ----------------------------------------------------------------------
// Tutorial 7: publisher confirms.

#[test]
fn tut7_publisher_confirms() {
    common::require_broker();
    let out = run_ok("tut7_publisher_confirms", &["--messages", "300"]);
    let hows = [
        "individually",
        "in batch",
        "and handled confirms asynchronously",
    ];
    assert_eq!(out.stdout.len(), 3, "{:?}", out.stdout);
    for (line, how) in out.stdout.iter().zip(hows) {
        let ms = line
            .strip_prefix(&format!("Published 300 messages {how} in "))
            .and_then(|rest| rest.strip_suffix(" ms"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert!(ms.parse::<u64>().is_ok(), "not a number of ms: {line:?}");
    }
}

// ----------------------------------------------------------------------
// The reactor: a TCP line server and the AMQP client in one mio loop.

#[test]
fn reactor_relays_lines() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-reactor");
    let mut reactor = spawn(
        "reactor",
        &[
            "--port",
            "0",
            "--queue",
            &q,
            "--count",
            "3",
            "--timeout",
            RECEIVER_TIMEOUT,
        ],
    );
    let listening = reactor.next_line();
    let addr = listening
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {listening:?}"))
        .to_string();

    let mut tcp = TcpStream::connect(&addr).expect("connect to the reactor");
    tcp.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    tcp.write_all(b"one\ntwo\r\nthree\n").expect("send lines");
    let mut reader = BufReader::new(tcp);
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a relayed line");
        got.push(line);
    }
    assert_eq!(got, strings(&["one\n", "two\n", "three\n"]));

    let out = reactor.success();
    assert_eq!(
        out.stdout,
        vec![
            listening,
            r#"relayed "one" to 1 client(s)"#.to_string(),
            r#"relayed "two" to 1 client(s)"#.to_string(),
            r#"relayed "three" to 1 client(s)"#.to_string(),
        ]
    );
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
}

// ----------------------------------------------------------------------
// The command-line tools.

#[test]
fn cli_declare_publish_get_consume_delete() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-cli");

    let out = run_ok("declare", &["queue", &q, "--arg", "x-max-length=100"]);
    assert_eq!(
        out.stdout,
        vec![format!("declared queue {q} (0 messages, 0 consumers)")]
    );

    let out = run_ok(
        "publish",
        &[
            "--routing-key",
            &q,
            "--count",
            "3",
            "--header",
            "colour=blue",
            "--header",
            "size=L",
            "--content-type",
            "text/plain",
            "--correlation-id",
            "abc-1",
            "--reply-to",
            "replies",
            "--persistent",
            "--confirm",
            "hello \"cli\"",
        ],
    );
    assert_eq!(
        out.stdout,
        vec![format!(
            r#"published 3 message(s) to exchange "" with routing key "{q}" (confirmed)"#
        )]
    );
    let line = format!(
        r#"routing_key="{q}" exchange="" content_type="text/plain" correlation_id="abc-1" reply_to="replies" delivery_mode=2 headers={{colour="blue", size="L"}} body="hello \"cli\"""#
    );

    // get: one message, printed and acked.
    let out = run_ok("get", &[&q]);
    assert_eq!(out.stdout, vec![line.clone()]);

    // consume: the other two.
    let mut consume = spawn(
        "consume",
        &[&q, "--count", "2", "--timeout", RECEIVER_TIMEOUT],
    );
    consume.expect_err_line(&format!("consuming from \"{q}\""));
    let out = consume.success();
    assert_eq!(out.stdout, vec![line.clone(), line]);

    // get on the empty queue: exit status 2.
    let out = run("get", &[&q]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(out.stderr, vec![format!("get: queue \"{q}\" is empty")]);

    // A body from stdin, not confirmed; then delete reports it.
    let out = run_with_stdin("publish", &["-r", &q], b"from\nstdin");
    assert_eq!(
        out.stdout,
        vec![format!(
            r#"published 1 message(s) to exchange "" with routing key "{q}""#
        )]
    );
    let out = run_ok("get", &["--requeue", &q]);
    assert_eq!(
        out.stdout,
        vec![format!(
            r#"routing_key="{q}" exchange="" body="from\nstdin""#
        )]
    );
    let out = run_ok("delete", &["queue", &q]);
    assert_eq!(out.stdout, vec![format!("deleted queue {q} (1 messages)")]);

    // The queue is gone.
    let out = run("get", &[&q]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(out.stderr[0].contains("404"), "{:?}", out.stderr);
}

#[test]
fn cli_consume_from_an_exchange() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let x = cleanup.exchange("ex-cli-x");

    let out = run_ok("declare", &["exchange", &x, "--type", "topic"]);
    assert_eq!(out.stdout, vec![format!("declared exchange {x} (topic)")]);

    let mut consume = spawn(
        "consume",
        &[
            "--exchange",
            &x,
            "-b",
            "a.*",
            "-b",
            "*.z",
            "--count",
            "2",
            "--no-ack",
            "--prefetch",
            "10",
            "--timeout",
            RECEIVER_TIMEOUT,
        ],
    );
    let ready = consume.next(true);
    assert!(ready.starts_with("consuming from \"amq.gen-"), "{ready:?}");

    for key in ["a.b", "b.b", "y.z"] {
        run_ok("publish", &["-e", &x, "-r", key, "--confirm", key]);
    }
    // An unroutable mandatory message is reported.
    let out = run("publish", &["-e", &x, "-r", "nowhere", "--mandatory", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(out.stderr[0].contains("no route"), "{:?}", out.stderr);

    let out = consume.success();
    assert_eq!(
        out.stdout,
        vec![
            format!(r#"routing_key="a.b" exchange="{x}" body="a.b""#),
            format!(r#"routing_key="y.z" exchange="{x}" body="y.z""#),
        ]
    );

    let out = run_ok("delete", &["exchange", &x]);
    assert_eq!(out.stdout, vec![format!("deleted exchange {x}")]);
}

/// `publish --count N` reports progress and a summary on stderr; `consume
/// --summary` a summary; `--stats` the client's counters on both.
#[test]
fn cli_progress_summary_and_stats() {
    common::require_broker();
    let mut cleanup = Cleanup::default();
    let q = cleanup.queue("ex-cli-rate");
    run_ok("declare", &["queue", &q]);

    // 2000 confirmed publishes take well over a millisecond: at least one
    // progress line comes.
    let out = run_ok(
        "publish",
        &[
            "-r",
            &q,
            "--count",
            "2000",
            "--confirm",
            "--progress",
            "0.001",
            "--stats",
            "body",
        ],
    );
    assert_eq!(
        out.stdout,
        vec![format!(
            r#"published 2000 message(s) to exchange "" with routing key "{q}" (confirmed)"#
        )]
    );
    let (summary, rest): (Vec<_>, Vec<_>) = out
        .stderr
        .iter()
        .partition(|l| l.starts_with("publish: 2000 messages, 8000 bytes in "));
    assert_eq!(summary.len(), 1, "{:?}", out.stderr);
    assert!(summary[0].ends_with(" msgs/s"), "{:?}", out.stderr);
    let progress: Vec<_> = rest
        .iter()
        .filter(|l| l.starts_with("publish: ") && l.contains(" sent") && l.ends_with(" msgs/s"))
        .collect();
    assert!(!progress.is_empty(), "no progress line: {:?}", out.stderr);
    let stats = out.stderr.last().map(String::as_str).unwrap_or("");
    for want in [
        "publish: stats: ",
        " publishes=2000 ",
        " confirms=2000 ",
        " promises=0 ",
        " unconfirmed=0 ",
        " blocked=0",
    ] {
        assert!(stats.contains(want), "{want:?} not in {:?}", out.stderr);
    }

    // One message (the default count): no progress, no summary.
    let out = run_ok("publish", &["-r", &q, "--confirm", "one"]);
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);

    let mut consume = spawn(
        "consume",
        &[
            &q,
            "--count",
            "2001",
            "--summary",
            "--stats",
            "--timeout",
            RECEIVER_TIMEOUT,
        ],
    );
    consume.expect_err_line(&format!("consuming from \"{q}\""));
    let out = consume.success();
    assert_eq!(out.stdout.len(), 2001);
    assert_eq!(out.stderr.len(), 3, "{:?}", out.stderr);
    assert!(
        out.stderr[1].starts_with("consume: 2001 messages, 8003 bytes in ")
            && out.stderr[1].ends_with(" msgs/s"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr[2].starts_with("consume: stats: ")
            && out.stderr[2].contains(" deliveries=2001 "),
        "{:?}",
        out.stderr
    );
}

// ----------------------------------------------------------------------
// Every example: --help, a bad flag, a bad password.

#[test]
fn every_example_has_help() {
    for name in ALL_EXAMPLES {
        let out = run(name, &["--help"]);
        assert!(out.status.success(), "{name} --help: {out:?}");
        assert!(
            out.stdout.first().is_some_and(|l| l.starts_with("Usage: ")),
            "{name} --help: {out:?}"
        );
        assert!(out.stderr.is_empty(), "{name} --help: {out:?}");
    }
}

#[test]
fn a_bad_flag_is_one_line_and_a_failure() {
    for name in ALL_EXAMPLES {
        let out = run(name, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert!(out.stdout.is_empty(), "{name}: {out:?}");
        assert_eq!(out.stderr.len(), 1, "{name}: {out:?}");
        let line = &out.stderr[0];
        assert!(
            line.starts_with(&format!("{name}: ")) && line.contains("--no-such-flag"),
            "{name}: {line:?}"
        );
        let out = run(name, &["--count", "many"]);
        assert_ne!(out.status.code(), Some(0), "{name}: {out:?}");
        assert_eq!(out.stderr.len(), 1, "{name}: {out:?}");
    }
}

#[test]
fn a_bad_password_is_never_echoed() {
    common::require_broker();
    let secret = "S3cr3t-Pa55word";
    let (host, port) = common::host_port(&common::amqp_url());
    let wrong = format!("amqp://guest:{secret}@{host}:{port}/%2f");
    let refused = format!("amqp://guest:{secret}@127.0.0.1:1/%2f");
    let malformed = format!("amqp://guest:{secret}/x@{host}:{port}/%2f");
    let cases: [(&str, &[&str]); 6] = [
        ("tut1_send", &[]),
        ("tut2_worker", &["--timeout", "1"]),
        ("publish", &["-r", "q", "body"]),
        ("get", &["q"]),
        ("declare", &["queue", "q"]),
        ("reactor", &["--port", "0", "--timeout", "10"]),
    ];
    for (name, args) in cases {
        for url in [&wrong, &refused, &malformed] {
            // Once as --url, once as AMQP_URL.
            let mut with_flag = vec!["--url", url.as_str()];
            with_flag.extend_from_slice(args);
            let by_flag = run(name, &with_flag);
            let mut cmd = command(name, args);
            cmd.env("AMQP_URL", url);
            let by_env = spawn_cmd(name, cmd).finish();
            for out in [by_flag, by_env] {
                assert_eq!(out.status.code(), Some(1), "{name} {url}: {out:?}");
                assert_eq!(out.stderr.len(), 1, "{name} {url}: {out:?}");
                let all = format!("{:?}{:?}", out.stdout, out.stderr);
                assert!(!all.contains(secret), "{name} echoed the password: {all}");
            }
        }
    }
    // The refusal itself is reported clearly.
    let out = run("tut1_send", &["--url", &wrong]);
    assert!(
        out.stderr[0].contains("ACCESS_REFUSED") && out.stderr[0].contains("guest:***@"),
        "{:?}",
        out.stderr
    );
}

/// `cluster_failover` against the one broker: it publishes with confirms,
/// consumes what it published, and reports the counts.
#[test]
fn cluster_failover_publishes_and_consumes() {
    common::require_broker();
    let q = common::unique("failover");
    let url = common::amqp_url();
    let out = run_ok(
        "cluster_failover",
        &[
            "--url",
            &url,
            "--queue",
            &q,
            "--count",
            "40",
            "--rate",
            "400",
            "--timeout",
            "20",
        ],
    );
    let last = out.stdout.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("done: published ") && last.contains(" unknown 0 refused 0 received 40"),
        "{:?}",
        out.stdout
    );
    common::rabbitmqctl(&["delete_queue", &q]);
}

/// `many_clients`: several connections in one `mio::Poll`, every message
/// received.
#[test]
fn many_clients_in_one_thread() {
    common::require_broker();
    let url = common::amqp_url();
    let out = run_ok(
        "many_clients",
        &[
            "--url",
            &url,
            "--clients",
            "8",
            "--messages",
            "80",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(
        out.stdout.first().map(String::as_str),
        Some("8 consumers connected")
    );
    assert!(
        out.stdout
            .last()
            .is_some_and(|l| l.starts_with("80 messages through 8 connections in one thread")),
        "{:?}",
        out.stdout
    );
}
