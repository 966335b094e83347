//! A local 3-node RabbitMQ cluster for the cluster tests: `puka-c1@<host>`,
//! `puka-c2@<host>`, `puka-c3@<host>` on 127.0.0.1:5701..5703, set up by
//! `scripts/cluster`, which these helpers also use to kill and restart nodes.
//! The other nodes of the machine (5672, puka-tls, puka-fault) are never
//! touched.
//!
//! A test takes [`serial`] first (no two runs touch the cluster at once),
//! then [`cluster`] (starts or repairs it, once per process), then a
//! [`Restore`] guard, which puts back every node the test killed or stopped.
//! Nodes are numbered 0, 1, 2 here (`puka-c1` is node 0).

use crate::common;
use puka::{Client, Options, QueueDelete};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// A port held (listened on) by the test using the cluster, so that two
/// processes never overlap (next to the nodes' distribution ports,
/// 25701..25703).
pub const LOCK_PORT: u16 = 25710;

/// The bound on every wait for something that must happen.
pub const W: Duration = Duration::from_secs(15);

/// The cluster's nodes, as `scripts/cluster` reported them.
#[derive(Debug)]
pub struct Cluster {
    /// Erlang node names (for `rabbitmqctl -n`), `puka-c1@<host>` first.
    pub nodes: Vec<String>,
    /// Their AMQP URLs, in the same order.
    pub urls: Vec<String>,
}

impl Cluster {
    /// The URLs of every node but `i`.
    pub fn urls_except(&self, i: usize) -> Vec<String> {
        let mut urls = self.urls.clone();
        urls.remove(i);
        urls
    }
}

/// The cluster, started or repaired by `bash scripts/cluster` once per test
/// process; panics with one line when that fails. Take [`serial`] first.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn start() -> Result<Cluster, String> {
    let out = run_script(&[])?;
    let nodes: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(": node ")?.1.split_once(" is up")?.0.into())
        .map(str::to_string)
        .collect();
    let urls: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("scripts/cluster: url "))
        .map(|u| u.trim().to_string())
        .collect();
    if nodes.len() != 3 || urls.len() != 3 {
        return Err(format!(
            "`bash scripts/cluster` did not report three nodes and three URLs \
             (nodes {nodes:?}, urls {urls:?})"
        ));
    }
    Ok(Cluster { nodes, urls })
}

/// Runs `bash scripts/cluster ARGS...` (under `timeout 600`), echoing its
/// output; returns its stdout, or its last line of output as the error.
pub fn run_script(args: &[&str]) -> Result<String, String> {
    common::run_script("cluster", args)
}

/// Taken first by every test that uses the cluster: they kill and stop its
/// nodes, so they must not overlap — within this process (the mutex) nor
/// with another test process (a listening socket on [`LOCK_PORT`], which
/// only one process can hold; the kernel frees it when the process dies, so
/// a killed run leaves no stale lock).
pub fn serial() -> Serial {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let limit = Duration::from_secs(600);
    let deadline = Instant::now() + limit;
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", LOCK_PORT)) {
            Ok(l) => break l,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!(
                "cannot take the cluster lock (127.0.0.1:{LOCK_PORT}) within {limit:?}: {e} \
                 (another run of the cluster tests?)"
            ),
        }
    };
    Serial {
        _listener: listener,
        _guard: guard,
    }
}

/// Held by a test for its whole run; see [`serial`].
pub struct Serial {
    _listener: TcpListener,
    _guard: MutexGuard<'static, ()>,
}

/// The index (0..3) of the node the client connection named `name` (its
/// `connection_name` client property) is on, from `rabbitmqctl
/// list_connections pid client_properties` asked of any node that answers
/// (the list is cluster-wide; a connection's pid `<NODE.x.y.z>` names its
/// node). Polls until the connection is listed, within [`W`].
pub fn node_of_connection(name: &str) -> usize {
    let c = cluster();
    let needle = format!("\"{name}\"");
    let deadline = Instant::now() + W;
    loop {
        let mut outputs = Vec::new();
        for node in &c.nodes {
            let out = match common::try_rabbitmqctl(&[
                "-n",
                node,
                "-q",
                "list_connections",
                "--no-table-headers",
                "pid",
                "client_properties",
            ]) {
                Ok(out) => out,
                Err(e) => {
                    outputs.push(e);
                    continue;
                }
            };
            let pid = out
                .lines()
                .find(|l| l.contains(&needle))
                .and_then(|l| l.split_whitespace().next());
            if let Some(pid) = pid {
                return c
                    .nodes
                    .iter()
                    .position(|n| pid.starts_with(&format!("<{n}.")))
                    .unwrap_or_else(|| panic!("connection {name:?} has pid {pid} on no node"));
            }
            outputs.push(out);
            break; // the list is cluster-wide: one answer is enough
        }
        assert!(
            Instant::now() < deadline,
            "connection {name:?} not listed by any node within {W:?}:\n{}",
            outputs.join("\n")
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -9` of node `i`'s Erlang VM (`scripts/cluster kill-node`); returns
/// once it is gone. Panics when that fails.
pub fn kill_node(i: usize) {
    script_on(i, "kill-node").unwrap_or_else(|e| panic!("{e}"));
}

/// Starts node `i` (`scripts/cluster start-node`) and waits until it runs,
/// accepts AMQP and is back in the cluster.
pub fn start_node(i: usize) -> Result<(), String> {
    script_on(i, "start-node")
}

/// `rabbitmqctl stop_app` on node `i`. Panics when that fails.
pub fn stop_app(i: usize) {
    script_on(i, "stop-app").unwrap_or_else(|e| panic!("{e}"));
}

/// `rabbitmqctl start_app` on node `i`, then waits until it accepts AMQP and
/// is back in the cluster.
pub fn start_app(i: usize) -> Result<(), String> {
    script_on(i, "start-app")
}

fn script_on(i: usize, command: &str) -> Result<(), String> {
    assert!(i < 3, "node index {i} (nodes are 0, 1, 2)");
    let _ = cluster();
    run_script(&[command, &(i + 1).to_string()]).map(drop)
}

/// Whether node `i` accepts TCP connections on its AMQP port.
pub fn port_open(i: usize) -> bool {
    let addr = ([127, 0, 0, 1], 5701 + i as u16).into();
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Puts the cluster back when dropped: a node whose AMQP port does not
/// answer (killed, or its application stopped) is started again and waited
/// for until it is back in the cluster (`scripts/cluster start-node`; with
/// several down, `scripts/cluster`, which starts them together). Never
/// panics (it may run while a test unwinds). Create it after any guard
/// that needs the whole cluster, so that it drops first.
pub struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let down: Vec<usize> = (0..3).filter(|&i| !port_open(i)).collect();
        let result = match down[..] {
            [] => Ok(()),
            [i] => start_node(i),
            _ => run_script(&[]).map(drop),
        };
        if let Err(e) = result {
            eprintln!("cluster::Restore: {e}");
        }
    }
}

/// Deletes the named queues through any node of the cluster when dropped
/// (errors ignored; never panics). Create it before a [`Restore`] so it runs
/// after it, with every node back.
pub struct DeleteQueues {
    urls: Vec<String>,
    queues: Vec<String>,
}

impl DeleteQueues {
    /// A guard for `queues` (starts the cluster if needed).
    pub fn new(queues: &[&str]) -> Self {
        DeleteQueues {
            urls: cluster().urls.clone(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
        }
    }
}

impl Drop for DeleteQueues {
    fn drop(&mut self) {
        let Ok(mut client) = Client::with_addresses(&self.urls, Options::default()) else {
            return;
        };
        let p = client.handshake();
        if client.wait_timeout(p, W).is_err() {
            return;
        }
        let ps: Vec<_> = self
            .queues
            .iter()
            .map(|q| client.queue_delete(QueueDelete::new(q)))
            .collect();
        for p in ps {
            let _ = client.wait_timeout(p, W);
        }
        let p = client.close();
        let _ = client.wait_timeout(p, W);
    }
}
