//! Failover against a local 3-node RabbitMQ cluster (`puka-c1..3@<host>` on
//! 127.0.0.1:5701..5703), set up by `scripts/cluster`, whose nodes these
//! tests kill (`kill -9`) and restart. The main node (5672) and the other
//! test nodes are never touched.
//!
//! The first test runs `bash scripts/cluster` (once per test process: it
//! starts or repairs the cluster); if that fails, the test fails with its
//! message. Nothing is skipped. The tests run one at a time (a lock port,
//! see `support::cluster::serial`), and each puts the cluster back even
//! when an assertion fails (a guard that restarts every node it killed).
//!
//! These tests need no client recovery: a connection to a killed node ends,
//! and a new client carries on through the nodes left.

mod common;
mod support;

use puka::{Client, ConnectionEvent, Consume, Error, Options, Promise, QueueDeclare};
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};
use support::cluster::{self, DeleteQueues, Restore, W};

/// How many messages the publisher sends.
const MESSAGES: u32 = 1000;
/// The window in which a delivery that must not come is given a chance.
const QUIET: Duration = Duration::from_millis(1500);
/// The bound on a quorum queue electing a new leader after its leader died.
const ELECTION: Duration = Duration::from_secs(60);

/// Prints how long a test took when dropped.
struct Timed(&'static str, Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        eprintln!("{}: {:.2?}", self.0, self.1.elapsed());
    }
}

/// Drives `c` until it reports [`ConnectionEvent::Closed`] (within
/// `limit`); its error.
fn await_closed(c: &mut Client, limit: Duration) -> Error {
    let deadline = Instant::now() + limit;
    loop {
        while let Some(ev) = c.next_connection_event() {
            match ev {
                ConnectionEvent::Closed(e) => return e,
                ev @ ConnectionEvent::Disconnected(_) => {
                    panic!("recovery is off, yet the client reported {ev:?}")
                }
                _ => {}
            }
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "the connection did not end within {limit:?}"
        );
        c.run_loop(Some((deadline - now).min(Duration::from_millis(50))))
            .expect("run_loop");
        if c.is_closed() {
            // run_loop returns at once now: don't spin.
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Polls `queue`'s ready-message count through `c` until it is at least
/// `at_least` (the queue's new leader may still be being elected); the count.
fn await_message_count(c: &mut Client, queue: &str, at_least: usize) -> u32 {
    let deadline = Instant::now() + ELECTION;
    loop {
        let p = c.queue_declare(QueueDeclare::named(queue).passive());
        let last = match c.wait_timeout(p, W) {
            Ok(ok) if ok.message_count as usize >= at_least => return ok.message_count,
            Ok(ok) => format!("{} ready messages", ok.message_count),
            Err(e) if e.is_connection_error() => panic!("passive declare of {queue}: {e}"),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{queue} does not show the {at_least} confirmed messages within {ELECTION:?} \
             (last: {last})"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// Takes every message of `queue` with a no-ack consumer: at least
/// `expected`, then until nothing comes for [`QUIET`]; their bodies
/// (decimal ids) in arrival order.
fn drain_ids(c: &mut Client, queue: &str, expected: u32) -> Vec<u32> {
    let consumer = c.basic_consume_with(Consume::queue(queue).no_ack());
    let mut ids = Vec::with_capacity(expected as usize);
    loop {
        let limit = if ids.len() < expected as usize {
            W
        } else {
            QUIET
        };
        match c.wait_timeout(consumer, limit) {
            Ok(Some(d)) => {
                let body = d.body_str().expect("utf-8 body");
                ids.push(body.parse().expect("a decimal id as the body"));
                assert!(
                    ids.len() <= MESSAGES as usize,
                    "more than {MESSAGES} messages"
                );
            }
            Err(Error::Timeout) if ids.len() >= expected as usize => break,
            Ok(None) => panic!("the consumer ended"),
            Err(e) => panic!("delivery #{} of {expected}: {e}", ids.len()),
        }
    }
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("basic_cancel");
    ids
}

/// A client given all three nodes publishes to a quorum queue with
/// confirms; the node it is on is killed while publishes are in flight.
/// Every publish resolves (confirmed, outcome unknown, or failed with the
/// connection), the connection ends with a connection error, and a new
/// client on the two nodes left finds every confirmed message in the queue.
#[test]
fn confirmed_messages_survive_killing_the_node_of_the_publisher() {
    let _serial = cluster::serial();
    let _timed = Timed(
        "confirmed_messages_survive_killing_the_node_of_the_publisher",
        Instant::now(),
    );
    let cl = cluster::cluster();
    let queue = common::unique("puka-cluster-qq");
    let name = common::unique("puka-cluster-publisher");
    // Dropped last: deletes the queue once the guard below restored the node.
    let _delete = DeleteQueues::new(&[&queue]);
    let _restore = Restore;

    let mut client = Client::with_addresses(&cl.urls, Options::default().connection_name(&name))
        .expect("Client::with_addresses");
    let p = client.handshake();
    client.wait_timeout(p, W).expect("connect to the cluster");
    let p = client.queue_declare(
        QueueDeclare::named(&queue)
            .durable()
            .argument("x-queue-type", "quorum"),
    );
    client.wait_timeout(p, W).expect("declare the quorum queue");
    let victim = cluster::node_of_connection(&name);
    eprintln!("publisher {name} is on {}", cl.nodes[victim]);

    let publish = |c: &mut Client, i: u32| c.basic_publish("", &queue, i.to_string().as_bytes());
    // The first half, confirmed before the kill.
    let mut promises: Vec<Promise<()>> =
        (0..MESSAGES / 2).map(|i| publish(&mut client, i)).collect();
    let ids: Vec<_> = promises.iter().map(Promise::id).collect();
    client
        .wait_for_all_timeout(&ids, W)
        .expect("the first half resolves");

    // The second half, spread over about 3 s, while another thread kills
    // the node (which takes well under that): the kill lands among them.
    // Each batch is sent, then left unread for a while, so the kill most
    // likely finds publishes whose confirms the client has not read.
    let killer = thread::spawn(move || cluster::kill_node(victim));
    let rest: Vec<u32> = (MESSAGES / 2..MESSAGES).collect();
    for chunk in rest.chunks(5) {
        promises.extend(chunk.iter().map(|&i| publish(&mut client, i)));
        let _ = client.flush(W); // fails once the connection is gone
        thread::sleep(Duration::from_millis(30));
        client
            .run_loop(Some(Duration::from_millis(1)))
            .expect("run_loop");
    }
    if killer.join().is_err() {
        panic!("kill_node({victim}) failed (its message is above)");
    }

    // Every publish resolves, with the connection's end at the latest.
    let ids: Vec<_> = promises.iter().map(Promise::id).collect();
    client
        .wait_for_all_timeout(&ids, W)
        .expect("every publish resolves after the kill");
    let mut confirmed = HashSet::new();
    let (mut unknown, mut failed) = (0, 0);
    for (i, p) in (0..).zip(promises) {
        match client.wait_timeout(p, Duration::ZERO) {
            Ok(()) => {
                confirmed.insert(i);
            }
            Err(e) if e.is_outcome_unknown() => unknown += 1,
            Err(e) if e.is_connection_error() => failed += 1,
            Err(e) => panic!(
                "publish #{i}: expected Ok, outcome unknown or a connection error, got {e:?}"
            ),
        }
    }
    let closed = await_closed(&mut client, W);
    assert!(
        closed.is_connection_error(),
        "the connection ended with {closed:?}, not a connection error"
    );
    eprintln!(
        "publishes: {} confirmed, {unknown} outcome unknown, {failed} failed; connection: {closed}",
        confirmed.len()
    );
    assert!(
        confirmed.len() >= (MESSAGES / 2) as usize,
        "the first half was confirmed before the kill"
    );

    // A new client on the nodes left finds every confirmed message.
    let mut reader = Client::with_addresses(
        &cl.urls_except(victim),
        Options::default().connection_name(&format!("{name}-reader")),
    )
    .expect("Client::with_addresses");
    let p = reader.handshake();
    reader
        .wait_timeout(p, W)
        .expect("connect to the nodes left");
    let count = await_message_count(&mut reader, &queue, confirmed.len());
    let ids = drain_ids(&mut reader, &queue, count);
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message came twice");
    assert!(
        ids.iter().all(|&i| i < MESSAGES),
        "a message that was never published"
    );
    let mut lost: Vec<u32> = confirmed.difference(&unique).copied().collect();
    lost.sort_unstable();
    assert!(lost.is_empty(), "confirmed messages lost: {lost:?}");
    assert_eq!(
        ids.len(),
        count as usize,
        "the queue's message count and the messages consumed"
    );
    assert!(confirmed.len() <= ids.len() && ids.len() <= MESSAGES as usize);
    eprintln!(
        "in the queue after the kill: {} of {MESSAGES} ({} confirmed)",
        ids.len(),
        confirmed.len()
    );
    let p = reader.close();
    reader.wait_timeout(p, W).expect("close");
}
