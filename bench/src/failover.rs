//! Failover figures (issue 15) on the local 3-node cluster of
//! `scripts/cluster` (puka-c1..3 on 127.0.0.1:5701..5703):
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml -- --scenario failover [--kills 20]
//!     [--rate 200] [--outage 60]
//! ```
//!
//! One puka client, given the three node URLs and recovery (initial backoff
//! 100 ms, max 1 s), publishes with confirms to a durable quorum queue at a
//! steady rate, each body a unique id. K times: the node the client is on
//! (from `rabbitmqctl list_connections pid client_properties`) is killed
//! (`scripts/cluster kill-node`), the time from the kill to the first
//! confirm of a publish issued after it is recorded, and the node is
//! started again (`scripts/cluster start-node`, which waits until it is back
//! in the cluster). Then all three nodes are killed for `--outage` seconds
//! while the client keeps publishing (each publish fails fast; its result is
//! taken), with its RSS sampled; then `scripts/cluster` starts them again and
//! the client must recover. At the end a fresh client drains the queue and
//! every Ok-confirmed id must be in it.
//!
//! Before each kill the queue must have its three members running, and the
//! queue's Raft leader is recorded (`rabbitmqctl eval`, `ra:members`): the
//! kills of the leader are the slow ones on RabbitMQ 3.10 (the channel the
//! client opens on reconnecting nacks every publish until the old leader's
//! node is back; bench/README.md). `--scenario failover_probe` shows that
//! alone: it kills the leader and compares a channel opened at once with
//! fresh ones.
//!
//! The program holds the cluster tests' lock (a listening socket on
//! 127.0.0.1:25710) for its whole run, and puts back any node it leaves
//! down. Everything the client does runs in this thread; the scripts and
//! `rabbitmqctl` run in helper threads, so the client is driven (publishing,
//! recovering) while they run.

use crate::common::median;
use puka::{
    BasicProperties, Client, ConnectionEvent, Consume, Error, Options, QueueDeclare, QueueDelete,
    Recovery, Unroutable,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::process::Command;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LOCK_PORT: u16 = 25710;
const CONNECTION_NAME: &str = "puka-bench-failover";
/// The bound on the first confirm after a kill (a quorum queue may need a
/// leader election) and on the recovery after the full outage.
const RECOVER_LIMIT: Duration = Duration::from_secs(120);
/// How long the killed node stays down when no confirm comes meanwhile.
const NODE_DOWN_LIMIT: Duration = Duration::from_secs(10);

struct Opts {
    kills: usize,
    rate: u64,
    outage: Duration,
    /// `--scenario failover_probe`: the stale-leader demonstration instead.
    probe: bool,
}

fn parse(argv: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        kills: 20,
        rate: 200,
        outage: Duration::from_secs(60),
        probe: false,
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--scenario" => {
                let v = val()?;
                match v.as_str() {
                    "failover" => {}
                    "failover_probe" => o.probe = true,
                    _ => return Err("--scenario failover cannot be combined with others".into()),
                }
            }
            "--kills" => o.kills = val()?.parse().map_err(|_| "bad --kills")?,
            "--rate" => o.rate = val()?.parse::<u64>().map_err(|_| "bad --rate")?.max(1),
            "--outage" => {
                o.outage = Duration::from_secs_f64(val()?.parse().map_err(|_| "bad --outage")?)
            }
            other => {
                return Err(format!(
                    "unknown argument {other} (failover takes --kills, --rate, --outage)"
                ))
            }
        }
    }
    Ok(o)
}

/// Publish outcomes, updated by the promises' callbacks.
#[derive(Default)]
struct Shared {
    published: u64,
    confirmed: u64,
    unknown: u64,
    failed: u64,
    /// Failures by kind (the error's variant).
    failed_kinds: BTreeMap<String, u64>,
    unknown_kinds: BTreeMap<String, u64>,
    confirmed_ids: Vec<u64>,
    /// The kill being measured (when the client saw the loss, or the kill
    /// returned, whichever came first).
    kill_at: Option<Instant>,
    /// The first confirm of a publish issued at or after `kill_at`.
    first_after: Option<Instant>,
    /// Publishes issued and not yet resolved.
    outstanding: u64,
}

fn kind(e: &Error) -> String {
    let s = format!("{e:?}");
    let end = s.find(|c: char| !c.is_alphanumeric()).unwrap_or(s.len());
    let mut k = s[..end].to_string();
    if let Error::OutcomeUnknown(inner) = e {
        k += &format!("({})", kind(inner));
    }
    k
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A command run in a helper thread: its stdout, or an error with its last
/// line of output.
fn spawn(cmd: Vec<String>) -> mpsc::Receiver<Result<String, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let shown = cmd.join(" ");
        let r = Command::new("timeout")
            .arg("600")
            .args(&cmd)
            .output()
            .map_err(|e| format!("cannot run {shown}: {e}"))
            .and_then(|out| {
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() {
                    Ok(stdout)
                } else {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    Err(format!(
                        "`{shown}` failed ({}): {}",
                        out.status,
                        stderr
                            .lines()
                            .chain(stdout.lines())
                            .rfind(|l| !l.trim().is_empty())
                            .unwrap_or("")
                    ))
                }
            });
        let _ = tx.send(r);
    });
    rx
}

fn script(args: &[&str]) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster");
    let mut v = vec!["bash".to_string(), path.to_string()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn rabbitmqctl(args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = if unsafe { libc::geteuid() } == 0 {
        vec!["rabbitmqctl".into()]
    } else {
        vec!["sudo".into(), "-n".into(), "rabbitmqctl".into()]
    };
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// The quorum queue as the broker sees it: the Raft leader (`ra:members`
/// asked of the member on the node asked), the leader the queue record
/// names (the server a channel's quorum-queue client tries first), the
/// member count and how many members run (leader or follower).
#[derive(Debug)]
struct QueueState {
    leader: String,
    record: String,
    members: usize,
    running: usize,
}

fn queue_state_cmd(node: &str, queue: &str) -> Vec<String> {
    let expr = format!(
        "{{ok,Q}}=rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>,queue,<<\"{queue}\">>)), \
         {{N,R}}=amqqueue:get_pid(Q), {{ok,Ms,{{_,L}}}}=ra:members({{N,node()}}), \
         Up=length([1||{{_,Nd}}<-Ms, lists:member(rpc:call(Nd,ets,lookup,[ra_state,N],1000),\
         [[{{N,leader}}],[{{N,follower}}]])]), \
         io:format(\"leader=~s record=~s members=~b running=~b~n\",[L,R,length(Ms),Up])."
    );
    rabbitmqctl(&["-n", node, "-q", "eval", &expr])
}

fn parse_queue_state(out: &str) -> Result<QueueState, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("leader="))
        .ok_or_else(|| format!("no queue state in {out:?}"))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
            .ok_or_else(|| format!("no {k} in {line:?}"))
    };
    let num = |k: &str| field(k)?.parse::<usize>().map_err(|e| format!("{k}: {e}"));
    Ok(QueueState {
        leader: field("leader=")?,
        record: field("record=")?,
        members: num("members=")?,
        running: num("running=")?,
    })
}

/// One kill's figures.
struct Kill {
    node: usize,
    /// The killed node was the queue's Raft leader.
    leader_killed: bool,
    disconnected: bool,
    reconnected_to: Option<String>,
    secs: f64,
    /// The first confirm came only after the node was started again.
    after_restart: bool,
}

struct Run {
    client: Client,
    shared: Rc<RefCell<Shared>>,
    queue: String,
    seq: u64,
    interval: Duration,
    next_publish: Instant,
    publishing: bool,
    /// Connection events in this phase: when `Disconnected` and
    /// `Reconnected` came, and where to.
    disconnected_at: Option<Instant>,
    reconnected: Option<(Instant, String)>,
    events: Vec<String>,
    rss_peak: Option<u64>,
    skipped: u64,
}

impl Run {
    fn publish(&mut self) {
        self.seq += 1;
        let id = self.seq;
        let issued = Instant::now();
        let p = match self.client.try_basic_publish(
            "",
            &self.queue,
            id.to_string().as_bytes(),
            &BasicProperties::default(),
            Unroutable::Drop,
        ) {
            Ok(p) => p,
            Err(_) => {
                self.skipped += 1;
                return;
            }
        };
        {
            let mut s = self.shared.borrow_mut();
            s.published += 1;
            s.outstanding += 1;
        }
        let shared = self.shared.clone();
        self.client.set_callback(p, move |_, r: Result<(), Error>| {
            let mut s = shared.borrow_mut();
            s.outstanding -= 1;
            match r {
                Ok(()) => {
                    s.confirmed += 1;
                    s.confirmed_ids.push(id);
                    if s.first_after.is_none() && s.kill_at.is_some_and(|k| issued >= k) {
                        s.first_after = Some(Instant::now());
                    }
                }
                Err(e) if e.is_outcome_unknown() => {
                    s.unknown += 1;
                    *s.unknown_kinds.entry(kind(&e)).or_default() += 1;
                }
                Err(e) => {
                    s.failed += 1;
                    *s.failed_kinds.entry(kind(&e)).or_default() += 1;
                }
            }
        });
    }

    /// Publishes what is due, drives the client for up to 10 ms, takes the
    /// connection events.
    fn tick(&mut self) -> Result<(), String> {
        let now = Instant::now();
        if self.publishing {
            if now > self.next_publish + Duration::from_secs(1) {
                self.next_publish = now; // no burst after a stall
            }
            while self.publishing && Instant::now() >= self.next_publish {
                self.publish();
                self.next_publish += self.interval;
            }
        }
        let wait = self
            .next_publish
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(10));
        self.client
            .run_loop(Some(wait))
            .map_err(|e| format!("run_loop: {e}"))?;
        while let Some(ev) = self.client.next_connection_event() {
            let now = Instant::now();
            match &ev {
                ConnectionEvent::Disconnected(_) => {
                    self.disconnected_at.get_or_insert(now);
                }
                ConnectionEvent::Reconnected { address } => {
                    self.reconnected = Some((now, address.clone()));
                }
                ConnectionEvent::Closed(e) => {
                    return Err(format!("the connection ended although recovery is on: {e}"))
                }
                _ => {}
            }
            if self.events.len() < 200 {
                self.events.push(format!("{ev:?}"));
            }
        }
        if let Some(peak) = self.rss_peak.as_mut() {
            *peak = (*peak).max(rss_kib());
        }
        Ok(())
    }

    /// Drives the client until `done` or `limit`.
    fn drive_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&mut Run) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let s = self.shared.borrow();
                return Err(format!(
                    "{what}: not within {limit:?}; published {} confirmed {} unknown {} {:?} \
                     failed {} {:?} outstanding {} skipped {}; events {:?}",
                    s.published,
                    s.confirmed,
                    s.unknown,
                    s.unknown_kinds,
                    s.failed,
                    s.failed_kinds,
                    s.outstanding,
                    self.skipped,
                    self.events
                ));
            }
            self.tick()?;
        }
    }

    /// Runs a command in a helper thread while driving the client.
    fn bg(&mut self, cmd: Vec<String>) -> Result<String, String> {
        let rx = spawn(cmd);
        loop {
            match rx.try_recv() {
                Ok(r) => return r,
                Err(mpsc::TryRecvError::Empty) => self.tick()?,
                Err(mpsc::TryRecvError::Disconnected) => return Err("helper thread died".into()),
            }
        }
    }

    /// Publishes until a publish issued from now on is confirmed.
    fn settle(&mut self, limit: Duration) -> Result<f64, String> {
        let start = Instant::now();
        {
            let mut s = self.shared.borrow_mut();
            s.kill_at = Some(start);
            s.first_after = None;
        }
        self.drive_until(limit, "a confirm", |r| {
            r.shared.borrow().first_after.is_some()
        })?;
        let mut s = self.shared.borrow_mut();
        let secs = s.first_after.unwrap().duration_since(start).as_secs_f64();
        s.kill_at = None;
        s.first_after = None;
        Ok(secs)
    }

    fn reset_events(&mut self) {
        self.disconnected_at = None;
        self.reconnected = None;
        self.events.clear();
    }

    /// The queue's state from the first node (of those up) that answers.
    fn queue_state(&mut self, nodes: &[String]) -> Result<QueueState, String> {
        let mut errs = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if !port_open(i) {
                continue;
            }
            match self
                .bg(queue_state_cmd(n, &self.queue.clone()))
                .and_then(|o| parse_queue_state(&o))
            {
                Ok(st) => return Ok(st),
                Err(e) => errs.push(e),
            }
        }
        Err(format!("no node tells the queue's state: {errs:?}"))
    }

    /// Waits (driving the client) until the queue has three members, all
    /// running: the state every kill starts from.
    fn await_members(&mut self, nodes: &[String]) -> Result<QueueState, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.queue_state(nodes);
            match st {
                Ok(st) if st.members == 3 && st.running == 3 => return Ok(st),
                _ if Instant::now() >= deadline => {
                    return Err(format!(
                        "the queue's three members are not all running: {st:?}"
                    ))
                }
                _ => {
                    let until = Instant::now() + Duration::from_millis(500);
                    self.drive_until(Duration::from_secs(1), "members", |_| {
                        Instant::now() >= until
                    })?;
                }
            }
        }
    }
}

/// The cluster's node names and URLs, from `bash scripts/cluster` (which
/// starts or repairs it).
fn start_cluster() -> Result<(Vec<String>, Vec<String>), String> {
    let rx = spawn(script(&[]));
    let out = rx.recv().map_err(|_| "helper thread died")??;
    let nodes: Vec<String> = out
        .lines()
        .filter_map(|l| {
            Some(
                l.split_once(": node ")?
                    .1
                    .split_once(" is up")?
                    .0
                    .to_string(),
            )
        })
        .collect();
    let urls: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("scripts/cluster: url "))
        .map(|u| u.trim().to_string())
        .collect();
    if nodes.len() != 3 || urls.len() != 3 {
        return Err(format!(
            "scripts/cluster reported nodes {nodes:?}, urls {urls:?}"
        ));
    }
    Ok((nodes, urls))
}

fn port_open(i: usize) -> bool {
    let addr = ([127, 0, 0, 1], 5701 + i as u16).into();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Puts back every node that is down (on every exit path).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let down: Vec<usize> = (0..3).filter(|&i| !port_open(i)).collect();
        let cmd = match down[..] {
            [] => return,
            [i] => script(&["start-node", &(i + 1).to_string()]),
            _ => script(&[]),
        };
        eprintln!("failover: restoring the cluster ({})", cmd.join(" "));
        match spawn(cmd).recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("failover: {e}"),
            Err(_) => eprintln!("failover: helper thread died"),
        }
    }
}

pub fn main(argv: &[String]) -> i32 {
    let opts = match parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench failover: {e}");
            return 2;
        }
    };
    // The cluster tests' lock, held for the whole run.
    let lock = loop {
        match TcpListener::bind(("127.0.0.1", LOCK_PORT)) {
            Ok(l) => break l,
            Err(_) => {
                eprintln!("failover: 127.0.0.1:{LOCK_PORT} busy (cluster tests running?); waiting");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    };
    let r = run(&opts);
    drop(lock);
    match r {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("bench failover: FAILED: {e}");
            1
        }
    }
}

fn run(o: &Opts) -> Result<bool, String> {
    let started = Instant::now();
    let (nodes, urls) = start_cluster()?;
    let _restore = Restore;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let queue = format!("bench-failover-{stamp}-{}", std::process::id());
    println!(
        "# failover: kills={} rate={}/s outage={:?} queue={queue} nodes={nodes:?}",
        o.kills, o.rate, o.outage
    );
    let options = Options::default()
        .connection_name(CONNECTION_NAME)
        .recovery(Some(
            Recovery::default()
                .initial_backoff(Duration::from_millis(100))
                .max_backoff(Duration::from_secs(1)),
        ));
    let mut client = Client::with_addresses(&urls, options).map_err(|e| e.to_string())?;
    let p = client.handshake();
    client
        .wait_timeout(p, Duration::from_secs(15))
        .map_err(|e| format!("connect: {e}"))?;
    let p = client.queue_declare(
        QueueDeclare::named(&queue)
            .durable()
            .argument("x-queue-type", "quorum"),
    );
    client
        .wait_timeout(p, Duration::from_secs(15))
        .map_err(|e| format!("declare: {e}"))?;
    if o.probe {
        return probe(client, &nodes, &urls, &queue);
    }
    let mut r = Run {
        client,
        shared: Rc::new(RefCell::new(Shared::default())),
        queue: queue.clone(),
        seq: 0,
        interval: Duration::from_secs_f64(1.0 / o.rate as f64),
        next_publish: Instant::now(),
        publishing: true,
        disconnected_at: None,
        reconnected: None,
        events: Vec::new(),
        rss_peak: None,
        skipped: 0,
    };

    // K kills of the client's node.
    let mut kills: Vec<Kill> = Vec::new();
    for k in 1..=o.kills {
        // Steady state: publishing confirmed, then a second more.
        r.settle(Duration::from_secs(60))?;
        let until = Instant::now() + Duration::from_secs(1);
        r.drive_until(Duration::from_secs(2), "steady", |_| {
            Instant::now() >= until
        })?;
        // All three members run; which one leads.
        let st = r.await_members(&nodes)?;
        let out = r.bg(rabbitmqctl(&[
            "-n",
            &nodes[0],
            "-q",
            "list_connections",
            "--no-table-headers",
            "pid",
            "client_properties",
        ]));
        let out = match out {
            Ok(o) => o,
            // c1 may be the node just restarted and not answering yet.
            Err(_) => r.bg(rabbitmqctl(&[
                "-n",
                &nodes[1],
                "-q",
                "list_connections",
                "--no-table-headers",
                "pid",
                "client_properties",
            ]))?,
        };
        let needle = format!("\"{CONNECTION_NAME}\"");
        let pid = out
            .lines()
            .find(|l| l.contains(&needle))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| format!("connection {CONNECTION_NAME} not listed:\n{out}"))?;
        let node = nodes
            .iter()
            .position(|n| pid.starts_with(&format!("<{n}.")))
            .ok_or_else(|| format!("pid {pid} on no node"))?;
        r.reset_events();
        {
            let mut s = r.shared.borrow_mut();
            s.kill_at = None;
            s.first_after = None;
        }
        // The kill: measured from when the client saw the loss or the
        // kill-node returned (the VM gone), whichever came first.
        let rx = spawn(script(&["kill-node", &(node + 1).to_string()]));
        let script_result = loop {
            if r.shared.borrow().kill_at.is_none() {
                if let Some(d) = r.disconnected_at {
                    r.shared.borrow_mut().kill_at = Some(d);
                }
            }
            match rx.try_recv() {
                Ok(res) => break res,
                Err(mpsc::TryRecvError::Empty) => r.tick()?,
                Err(mpsc::TryRecvError::Disconnected) => return Err("helper died".into()),
            }
        };
        script_result?;
        {
            let mut s = r.shared.borrow_mut();
            if s.kill_at.is_none() {
                s.kill_at = Some(r.disconnected_at.unwrap_or_else(Instant::now));
            }
        }
        // While the node is down, up to NODE_DOWN_LIMIT; then it is started
        // again (in a helper thread) and the wait goes on.
        let waited = r.drive_until(NODE_DOWN_LIMIT, "the first confirm after the kill", |r| {
            r.shared.borrow().first_after.is_some()
        });
        let mut restarted = None;
        let mut restart_at: Option<Instant> = None;
        if waited.is_err() {
            println!(
                "# failover: kill {k}: no confirm within {NODE_DOWN_LIMIT:?} with {} down; starting it again",
                nodes[node]
            );
            restart_at = Some(Instant::now());
            let rx = spawn(script(&["start-node", &(node + 1).to_string()]));
            r.drive_until(RECOVER_LIMIT, "the first confirm after the kill", |r| {
                r.shared.borrow().first_after.is_some()
            })?;
            restarted = Some(rx);
        }
        let secs = {
            let s = r.shared.borrow();
            s.first_after
                .unwrap()
                .duration_since(s.kill_at.unwrap())
                .as_secs_f64()
        };
        let kill = Kill {
            node,
            leader_killed: st.leader == nodes[node],
            disconnected: r.disconnected_at.is_some(),
            reconnected_to: r.reconnected.as_ref().map(|(_, a)| a.clone()),
            secs,
            after_restart: restarted.is_some(),
        };
        let from_restart = restart_at
            .map(|t| {
                let s = r.shared.borrow();
                format!(
                    "{:.3}",
                    s.first_after.unwrap().duration_since(t).as_secs_f64()
                )
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "result scenario=failover kill={k} node={} leader={} leader_killed={} disconnected={} reconnected_to={} after_restart={} kill_to_first_confirm_s={:.3} restart_to_first_confirm_s={from_restart}",
            nodes[kill.node],
            st.leader,
            kill.leader_killed,
            kill.disconnected,
            kill.reconnected_to.as_deref().unwrap_or("-"),
            kill.after_restart,
            secs
        );
        kills.push(kill);
        r.shared.borrow_mut().kill_at = None;
        match restarted {
            Some(rx) => loop {
                match rx.try_recv() {
                    Ok(res) => break res.map(drop)?,
                    Err(mpsc::TryRecvError::Empty) => r.tick()?,
                    Err(mpsc::TryRecvError::Disconnected) => return Err("helper died".into()),
                }
            },
            None => r
                .bg(script(&["start-node", &(node + 1).to_string()]))
                .map(drop)?,
        }
    }

    // The full outage: all three nodes down for `o.outage`.
    r.settle(Duration::from_secs(60))?;
    let until = Instant::now() + Duration::from_secs(2);
    r.drive_until(Duration::from_secs(3), "steady", |_| {
        Instant::now() >= until
    })?;
    let rss_before = rss_kib();
    let (failed_before, unknown_before, published_before) = {
        let s = r.shared.borrow();
        (s.failed, s.unknown, s.published)
    };
    r.reset_events();
    r.rss_peak = Some(rss_before);
    for n in 1..=3 {
        r.bg(script(&["kill-node", &n.to_string()]))?;
    }
    let outage_start = Instant::now();
    println!(
        "# failover: all three nodes killed; publishing on for {:?}",
        o.outage
    );
    let until = outage_start + o.outage;
    r.drive_until(o.outage + Duration::from_secs(5), "outage", |_| {
        Instant::now() >= until
    })?;
    let rss_outage_end = rss_kib();
    r.reconnected = None;
    let t_restart = Instant::now();
    r.bg(script(&[]))?;
    let restarted_secs = t_restart.elapsed().as_secs_f64();
    let recover_secs = r.settle(RECOVER_LIMIT)?;
    let rss_peak = r.rss_peak.take().unwrap_or(0);
    let (outage_published, outage_failed, outage_unknown) = {
        let s = r.shared.borrow();
        (
            s.published - published_before,
            s.failed - failed_before,
            s.unknown - unknown_before,
        )
    };
    let until = Instant::now() + Duration::from_secs(5);
    r.drive_until(Duration::from_secs(6), "steady", |_| {
        Instant::now() >= until
    })?;
    let rss_after = rss_kib();
    println!(
        "result scenario=failover_outage secs={:.0} published={outage_published} failed={outage_failed} \
         unknown={outage_unknown} rss_before_kib={rss_before} rss_peak_kib={rss_peak} \
         rss_outage_end_kib={rss_outage_end} rss_after_kib={rss_after} cluster_restart_s={restarted_secs:.1} \
         restart_to_first_confirm_s={recover_secs:.3} reconnected_to={}",
        o.outage.as_secs_f64(),
        r.reconnected.as_ref().map(|(_, a)| a.as_str()).unwrap_or("-")
    );

    // Stop publishing; every publish resolves.
    r.publishing = false;
    r.drive_until(Duration::from_secs(60), "every publish resolves", |r| {
        r.shared.borrow().outstanding == 0
    })?;
    let Run {
        client,
        shared,
        skipped,
        ..
    } = r;
    let p = {
        let mut c = client;
        let p = c.close();
        let _ = c.wait_timeout(p, Duration::from_secs(10));
        c
    };
    drop(p);
    let s = Rc::try_unwrap(shared)
        .map_err(|_| "callbacks still hold the counts")?
        .into_inner();

    // Drain the queue with a fresh client.
    let (found, duplicates, lost) = drain(&urls, &queue, &s.confirmed_ids)?;

    // The table.
    let secs: Vec<f64> = kills.iter().map(|k| k.secs).collect();
    let max = secs.iter().copied().fold(f64::NAN, f64::max);
    // The figures of the kills of the queue's leader and of the others.
    let split = |leader: bool| {
        let v: Vec<f64> = kills
            .iter()
            .filter(|k| k.leader_killed == leader)
            .map(|k| k.secs)
            .collect();
        let restarted = kills
            .iter()
            .filter(|k| k.leader_killed == leader && k.after_restart)
            .count();
        if v.is_empty() {
            return "none".to_string();
        }
        let lo = v.iter().copied().fold(f64::NAN, f64::min);
        let hi = v.iter().copied().fold(f64::NAN, f64::max);
        format!(
            "{} kills: {lo:.2}–{hi:.2} s (median {:.2} s; {restarted} only after the restart)",
            v.len(),
            median(&v)
        )
    };
    let no_loss = kills.iter().filter(|k| !k.disconnected).count();
    let after_restart = kills.iter().filter(|k| k.after_restart).count();
    let kinds = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "—".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!();
    println!("| failover figure | value |");
    println!("| --- | --- |");
    println!(
        "| kills of the client's node | {} (client saw no loss in {no_loss}) |",
        kills.len()
    );
    println!(
        "| kills whose first confirm came only after the node was restarted ({} s down) | {after_restart} |",
        NODE_DOWN_LIMIT.as_secs()
    );
    println!(
        "| kill → first confirm, the queue's leader killed | {} |",
        split(true)
    );
    println!(
        "| kill → first confirm, a follower killed | {} |",
        split(false)
    );
    println!("| kill → first confirm, p50 | {:.3} s |", median(&secs));
    println!("| kill → first confirm, max | {max:.3} s |");
    println!(
        "| kill → first confirm, each | {} |",
        secs.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| publishes issued | {} ({} skipped: client full) |",
        s.published, skipped
    );
    println!("| confirmed (Ok) | {} |", s.confirmed);
    println!(
        "| outcome unknown | {} ({}) |",
        s.unknown,
        kinds(&s.unknown_kinds)
    );
    println!(
        "| failed (nacked or connection error) | {} ({}) |",
        s.failed,
        kinds(&s.failed_kinds)
    );
    println!("| messages found in the queue afterwards | {found} ({duplicates} duplicate ids) |");
    println!("| confirmed messages lost | {lost} |");
    println!(
        "| full outage ({:.0} s, all 3 down): publishes / failed / unknown | {outage_published} / {outage_failed} / {outage_unknown} |",
        o.outage.as_secs_f64()
    );
    println!("| client RSS before / peak / after the outage | {rss_before} / {rss_peak} / {rss_after} KiB |");
    println!("| cluster restart (scripts/cluster) | {restarted_secs:.1} s |");
    println!("| restart done → first confirm | {recover_secs:.3} s |");
    println!(
        "| total run time | {:.0} s |",
        started.elapsed().as_secs_f64()
    );
    Ok(lost == 0)
}

/// Consumes every message of `queue` with a fresh client, then deletes it:
/// (unique ids found, duplicates, confirmed ids missing).
fn drain(urls: &[String], queue: &str, confirmed: &[u64]) -> Result<(usize, usize, usize), String> {
    let mut c = Client::with_addresses(urls, Options::default()).map_err(|e| e.to_string())?;
    let p = c.handshake();
    c.wait_timeout(p, Duration::from_secs(15))
        .map_err(|e| format!("drain connect: {e}"))?;
    // After the full restart the queue may still be electing a leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = loop {
        let p = c.queue_declare(QueueDeclare::named(queue).passive());
        match c.wait_timeout(p, Duration::from_secs(15)) {
            Ok(ok) => break ok.message_count as usize,
            Err(e) if Instant::now() >= deadline => return Err(format!("passive declare: {e}")),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(500));
                let mut fresh =
                    Client::with_addresses(urls, Options::default()).map_err(|e| e.to_string())?;
                let p = fresh.handshake();
                fresh
                    .wait_timeout(p, Duration::from_secs(15))
                    .map_err(|e| format!("drain connect: {e}"))?;
                c = fresh;
            }
        }
    };
    let got: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::with_capacity(count)));
    let g = got.clone();
    let consumer = c.basic_consume_then(Consume::queue(queue).no_ack(), move |_, d| {
        if let Ok(Some(d)) = d {
            if let Some(id) = d.body_str().and_then(|s| s.parse().ok()) {
                g.borrow_mut().push(id);
            }
        }
    });
    let mut last = (0, Instant::now());
    loop {
        c.run_loop(Some(Duration::from_millis(50)))
            .map_err(|e| format!("drain: {e}"))?;
        let n = got.borrow().len();
        if n != last.0 {
            last = (n, Instant::now());
        }
        let idle = last.1.elapsed();
        if (n >= count && idle >= Duration::from_secs(2)) || idle >= Duration::from_secs(10) {
            break;
        }
    }
    c.forget(consumer);
    let p = c.queue_delete(QueueDelete::new(queue));
    let _ = c.wait_timeout(p, Duration::from_secs(15));
    let p = c.close();
    let _ = c.wait_timeout(p, Duration::from_secs(10));
    let ids = got.borrow();
    let set: HashSet<u64> = ids.iter().copied().collect();
    let lost = confirmed.iter().filter(|id| !set.contains(id)).count();
    println!(
        "result scenario=failover_drain queue_count={count} received={} unique={} lost_confirmed={lost}",
        ids.len(),
        set.len()
    );
    Ok((set.len(), ids.len() - set.len(), lost))
}

/// A command run to its end (blocking): its stdout.
fn run_cmd(cmd: Vec<String>) -> Result<String, String> {
    spawn(cmd)
        .recv()
        .map_err(|_| "helper thread died".to_string())?
}

/// `--scenario failover_probe`: the nacks of the slow kills without the
/// publishing loop. The quorum queue's Raft leader L is killed; at once a
/// connection to a surviving node X publishes (its channel's quorum-queue
/// client is set up by that first publish, from the queue record, which
/// still names L). Then every 0.5 s, for 8 s, that channel and a channel of
/// a brand-new connection to X each publish once, beside what X says the
/// Raft leader and the record's leader are. Then L is started again and the
/// first channel publishes until it gets a confirm.
fn probe(
    mut setup: Client,
    nodes: &[String],
    urls: &[String],
    queue: &str,
) -> Result<bool, String> {
    let p = setup.basic_publish("", queue, b"probe");
    setup
        .wait_timeout(p, Duration::from_secs(15))
        .map_err(|e| format!("first publish: {e}"))?;
    let st = parse_queue_state(&run_cmd(queue_state_cmd(&nodes[0], queue))?)?;
    let l = nodes
        .iter()
        .position(|n| *n == st.leader)
        .ok_or_else(|| format!("leader {} is no node", st.leader))?;
    let x = (l + 1) % 3;
    let p = setup.close();
    let _ = setup.wait_timeout(p, Duration::from_secs(5));
    drop(setup);
    println!(
        "# failover_probe: queue {queue}: {st:?}; killing the leader {}, publishing through {}",
        nodes[l], nodes[x]
    );
    let connect = || -> Result<Client, String> {
        let mut c = Client::new(&urls[x]).map_err(|e| e.to_string())?;
        let p = c.handshake();
        c.wait_timeout(p, Duration::from_secs(5))
            .map_err(|e| format!("connect to {}: {e}", urls[x]))?;
        Ok(c)
    };
    let once = |c: &mut Client| -> String {
        let p = c.basic_publish("", queue, b"probe");
        match c.wait_timeout(p, Duration::from_secs(5)) {
            Ok(()) => "ack".into(),
            Err(e) => kind(&e),
        }
    };
    // A connection to L sees the kill at once (as the bench's client does);
    // the kill-node script returns only once the VM is gone and its port
    // closed, which under load can be after the record is updated.
    let mut watch = Client::new(&urls[l]).map_err(|e| e.to_string())?;
    let p = watch.handshake();
    watch
        .wait_timeout(p, Duration::from_secs(5))
        .map_err(|e| format!("connect to {}: {e}", urls[l]))?;
    let t0 = Instant::now();
    let killing = spawn(script(&["kill-node", &(l + 1).to_string()]));
    while watch.run_loop(Some(Duration::from_millis(5))).is_ok() && !watch.is_closed() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the connection to the killed node did not end".into());
        }
    }
    let mut a = connect()?;
    let first = once(&mut a);
    println!(
        "result scenario=failover_probe t_s={:.2} channel_a_first_publish={first} (connection opened {:.2} s after the kill began)",
        t0.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    killing.recv().map_err(|_| "helper thread died")??;
    for step in 1..=16u32 {
        let at = t0 + Duration::from_millis(500) * step;
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let ra = once(&mut a);
        let mut b = connect()?;
        let rb = once(&mut b);
        let p = b.close();
        let _ = b.wait_timeout(p, Duration::from_secs(5));
        let st = run_cmd(queue_state_cmd(&nodes[x], queue)).and_then(|o| parse_queue_state(&o));
        let (leader, record) = match &st {
            Ok(st) => (st.leader.as_str(), st.record.as_str()),
            Err(_) => ("?", "?"),
        };
        println!(
            "result scenario=failover_probe t_s={:.2} channel_a={ra} fresh_channel={rb} raft_leader={leader} record_leader={record}",
            t0.elapsed().as_secs_f64()
        );
    }
    let restart = Instant::now();
    let rx = spawn(script(&["start-node", &(l + 1).to_string()]));
    let mut ok_at = None;
    while restart.elapsed() < RECOVER_LIMIT {
        if once(&mut a) == "ack" {
            ok_at = Some(restart.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    rx.recv().map_err(|_| "helper thread died")??;
    println!(
        "result scenario=failover_probe channel_a_first_ack_after_restart_s={}",
        ok_at
            .map(|s| format!("{s:.2}"))
            .unwrap_or_else(|| "none".into())
    );
    let p = a.queue_delete(QueueDelete::new(queue));
    let _ = a.wait_timeout(p, Duration::from_secs(15));
    let p = a.close();
    let _ = a.wait_timeout(p, Duration::from_secs(5));
    Ok(ok_at.is_some())
}
