//! Automatic recovery on a local 3-node RabbitMQ cluster (`scripts/cluster`,
//! `puka-c1..3` on 127.0.0.1:5701..5703): the node a client is on is killed
//! (`kill -9`) or stopped (`stop_app`, a 320 close), and the client goes on
//! through the others. Each test takes the cluster lock and puts killed
//! nodes back when it ends (see `support::cluster`).

mod common;
mod support;

use puka::{Client, ConnectionEvent, Consume, Options, Promise, QueueDeclare, Recovery};
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};
use support::cluster::{self, DeleteQueues, Restore, W};

/// The bound on a quorum queue electing a new leader after its leader died.
const ELECTION: Duration = Duration::from_secs(60);

fn recovering(name: &str) -> Options {
    Options::default().connection_name(name).recovery(Some(
        Recovery::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1)),
    ))
}

fn quorum(queue: &str) -> QueueDeclare {
    QueueDeclare::named(queue)
        .durable()
        .argument("x-queue-type", "quorum")
}

/// Connection events seen so far (as text), and when `Reconnected` came.
#[derive(Default)]
struct Seen {
    events: Vec<String>,
    reconnected: Option<Instant>,
}

fn take_events(c: &mut Client, seen: &mut Seen) {
    while let Some(ev) = c.next_connection_event() {
        if matches!(ev, ConnectionEvent::Reconnected { .. }) && seen.reconnected.is_none() {
            seen.reconnected = Some(Instant::now());
        }
        if let ConnectionEvent::Closed(e) = &ev {
            panic!(
                "the connection ended although recovery is on: {e}; saw {:?}",
                seen.events
            );
        }
        seen.events.push(format!("{ev:?}"));
    }
}

/// Drives `c` until `Reconnected` (within `limit`).
fn await_reconnected(c: &mut Client, seen: &mut Seen, limit: Duration) {
    let deadline = Instant::now() + limit;
    while seen.reconnected.is_none() {
        take_events(c, seen);
        assert!(
            Instant::now() < deadline,
            "not reconnected within {limit:?}; saw {:?}",
            seen.events
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
}

/// A new client's count of `queue`'s ready messages once it reaches
/// `at_least` (a new leader may still be being elected).
fn await_count(urls: &[String], queue: &str, at_least: usize) -> usize {
    let mut c = Client::with_addresses(urls, Options::default()).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    let deadline = Instant::now() + ELECTION;
    loop {
        let p = c.queue_declare(QueueDeclare::named(queue).passive());
        if let Ok(ok) = c.wait_timeout(p, W) {
            if ok.message_count as usize >= at_least {
                return ok.message_count as usize;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{queue} never held {at_least} messages"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// Publishing with confirms to a quorum queue while the node the client is
/// on is killed: every publish resolves exactly once, every confirmed one
/// is in the queue, and publishing goes on through another node.
#[test]
fn publishing_goes_on_when_the_publishers_node_is_killed() {
    const N: u32 = 1500;
    let _serial = cluster::serial();
    let cl = cluster::cluster();
    let queue = common::unique("rec-qq-pub");
    let name = common::unique("rec-publisher");
    let _delete = DeleteQueues::new(&[&queue]);
    let _restore = Restore;
    let mut c = Client::with_addresses(&cl.urls, recovering(&name)).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.queue_declare(quorum(&queue))
        .wait_timeout(&mut c, W)
        .expect("declare");
    let victim = cluster::node_of_connection(&name);
    let mut seen = Seen::default();
    let mut promises: Vec<Promise<()>> = Vec::new();
    let mut killed_at = None;
    let mut killer = None;
    for i in 0..N {
        if i == N / 3 {
            killed_at = Some(Instant::now());
            killer = Some(thread::spawn(move || cluster::kill_node(victim)));
        }
        promises.push(c.basic_publish("", &queue, i.to_string().as_bytes()));
        if i % 10 == 0 {
            c.run_loop(Some(Duration::from_millis(5)))
                .expect("run_loop");
            take_events(&mut c, &mut seen);
        }
        // After the loss, pace the rest until the client is back, so that
        // publishing resumes on another node instead of failing fast.
        if killed_at.is_some() && seen.reconnected.is_none() && i > N / 3 + 50 {
            await_reconnected(&mut c, &mut seen, Duration::from_secs(60));
        }
    }
    killer.expect("the kill started").join().expect("kill_node");
    let ids: Vec<_> = promises.iter().map(Promise::id).collect();
    c.wait_for_all_timeout(&ids, Duration::from_secs(60))
        .expect("every publish resolves");
    let mut confirmed = HashSet::new();
    let (mut unknown, mut failed, mut confirmed_after) = (0, 0, 0);
    for (i, p) in (0..).zip(promises) {
        match c.wait_timeout(p, Duration::ZERO) {
            Ok(()) => {
                confirmed.insert(i);
                if i > N / 3 + 50 {
                    confirmed_after += 1;
                }
            }
            Err(e) if e.is_outcome_unknown() => unknown += 1,
            // Lost with the connection, made while it was down, or refused
            // by a quorum queue still electing its new leader: none of
            // these is in the queue by promise.
            Err(e) if e.is_connection_error() || matches!(e, puka::Error::Nacked) => failed += 1,
            Err(e) => panic!("publish #{i}: {e:?}"),
        }
    }
    let to_first = seen
        .reconnected
        .zip(killed_at)
        .map(|(r, k)| r.saturating_duration_since(k));
    eprintln!(
        "kill of {}: {} confirmed ({} after the loss), {unknown} outcome unknown, {failed} \
         failed; reconnected {to_first:?} after the kill; events {:?}",
        cl.nodes[victim],
        confirmed.len(),
        confirmed_after,
        seen.events
    );
    assert!(seen.events.iter().any(|e| e.starts_with("Disconnected")));
    assert!(confirmed_after > 0, "publishing did not resume");
    assert!(c.is_open());
    c.close().wait_timeout(&mut c, W).expect("close");
    let held = await_count(&cl.urls_except(victim), &queue, confirmed.len());
    assert!(
        confirmed.len() <= held && held <= N as usize,
        "{} confirmed, {held} in the queue",
        confirmed.len()
    );
}

/// A consumer with manual acks drains a quorum queue while the node it is
/// on is killed: it resumes through another node with the same promise,
/// and every message is processed at least once.
#[test]
fn a_consumer_resumes_when_its_node_is_killed() {
    const N: u32 = 600;
    let _serial = cluster::serial();
    let cl = cluster::cluster();
    let queue = common::unique("rec-qq-con");
    let name = common::unique("rec-consumer");
    let _delete = DeleteQueues::new(&[&queue]);
    let _restore = Restore;
    // Fill the queue first (a separate client).
    let mut filler = Client::with_addresses(&cl.urls, Options::default()).expect("client");
    filler
        .handshake()
        .wait_timeout(&mut filler, W)
        .expect("connect");
    filler
        .queue_declare(quorum(&queue))
        .wait_timeout(&mut filler, W)
        .expect("declare");
    let ps: Vec<_> = (0..N)
        .map(|i| filler.basic_publish("", &queue, i.to_string().as_bytes()))
        .collect();
    let ids: Vec<_> = ps.iter().map(Promise::id).collect();
    filler.wait_for_all_timeout(&ids, W).expect("filled");
    for p in ps {
        filler.wait_timeout(p, W).expect("confirmed");
    }
    filler.close().wait_timeout(&mut filler, W).expect("close");

    let mut c = Client::with_addresses(&cl.urls, recovering(&name)).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    let consumer = c.basic_consume_with(Consume::queue(&queue).prefetch(20));
    let victim = cluster::node_of_connection(&name);
    let mut seen = Seen::default();
    let mut processed: HashSet<u32> = HashSet::new();
    let mut deliveries = 0u32;
    let mut killer = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed.len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {N} processed; events {:?}",
            processed.len(),
            seen.events
        );
        if deliveries == N / 3 && killer.is_none() {
            // The kill while deliveries are in flight (the client is not
            // driven meanwhile; it sees the loss when it reads next).
            cluster::kill_node(victim);
            killer = Some(());
        }
        take_events(&mut c, &mut seen);
        match c.wait_timeout(consumer, Duration::from_millis(200)) {
            Ok(Some(d)) => {
                deliveries += 1;
                processed.insert(d.body_str().unwrap_or("").parse().expect("an id"));
                // An ack lost with the connection just means a redelivery.
                let _ = c.basic_ack(&d);
                thread::sleep(Duration::from_micros(500));
            }
            Err(puka::Error::Timeout) => {}
            Ok(None) => panic!("the consumer ended; saw {:?}", seen.events),
            Err(e) => panic!("the consumer failed: {e}; saw {:?}", seen.events),
        }
    }
    assert!(killer.is_some(), "the kill happened");
    eprintln!(
        "consumer across the kill of {}: {N} processed from {deliveries} deliveries; events {:?}",
        cl.nodes[victim], seen.events
    );
    assert!(seen.events.iter().any(|e| e.starts_with("Reconnected")));
    c.close().wait_timeout(&mut c, W).expect("close");
}

/// `stop_app` on the client's node (every connection there is closed with
/// 320): the client recovers on another node; `start_app` later changes
/// nothing for it.
#[test]
fn a_node_shutting_down_is_recovered_from() {
    let _serial = cluster::serial();
    let cl = cluster::cluster();
    let queue = common::unique("rec-qq-stop");
    let name = common::unique("rec-stop");
    let _delete = DeleteQueues::new(&[&queue]);
    let _restore = Restore;
    let mut c = Client::with_addresses(&cl.urls, recovering(&name)).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.queue_declare(quorum(&queue))
        .wait_timeout(&mut c, W)
        .expect("declare");
    let victim = cluster::node_of_connection(&name);
    cluster::stop_app(victim);
    let mut seen = Seen::default();
    await_reconnected(&mut c, &mut seen, Duration::from_secs(60));
    assert!(
        seen.events
            .iter()
            .any(|e| e.starts_with("Disconnected(ConnectionForced")),
        "{:?}",
        seen.events
    );
    let now_on = cluster::node_of_connection(&name);
    assert_ne!(now_on, victim, "reconnected to the stopped node");
    c.basic_publish("", &queue, b"after")
        .wait_timeout(&mut c, ELECTION)
        .expect("publish after recovery");
    cluster::start_app(victim).expect("start_app");
    c.run_loop(Some(Duration::from_millis(500)))
        .expect("run_loop");
    take_events(&mut c, &mut seen);
    assert!(c.is_open());
    assert_eq!(cluster::node_of_connection(&name), now_on, "it stays put");
    eprintln!("stop_app of {}: events {:?}", cl.nodes[victim], seen.events);
    c.close().wait_timeout(&mut c, W).expect("close");
}

/// Every node down, then back: while they are down, operations fail at once
/// (a publish loop keeps going, and the client's memory stays flat); once
/// the nodes return, the client recovers after its backoff, restores its
/// queue and consumer, and works.
#[test]
fn the_client_recovers_after_every_node_was_down() {
    const DOWN: Duration = Duration::from_secs(6);
    let _serial = cluster::serial();
    let cl = cluster::cluster();
    let queue = common::unique("rec-all-down");
    let name = common::unique("rec-all-down");
    let _restore = Restore;
    let mut c = Client::with_addresses(&cl.urls, recovering(&name)).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    // Not durable: gone with the nodes, restored by the client.
    c.queue_declare(QueueDeclare::named(&queue))
        .wait_timeout(&mut c, W)
        .expect("declare");
    let consumer = c.basic_consume_with(Consume::queue(&queue).no_ack());
    c.consumer_ready(consumer)
        .wait_timeout(&mut c, W)
        .expect("consumer");
    for i in 0..3 {
        cluster::kill_node(i);
    }
    let mut seen = Seen::default();
    let deadline = Instant::now() + W;
    while !seen.events.iter().any(|e| e.starts_with("Disconnected")) {
        assert!(
            Instant::now() < deadline,
            "no Disconnected; {:?}",
            seen.events
        );
        take_events(&mut c, &mut seen);
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    // Down: every publish fails promptly; the user goes on publishing.
    let rss0 = common::rss_bytes();
    let down_until = Instant::now() + DOWN;
    let (mut attempts, mut slowest) = (0u32, Duration::ZERO);
    while Instant::now() < down_until {
        let t = Instant::now();
        let p = c.basic_publish("", &queue, b"while down");
        let r = c.wait_timeout(p, Duration::from_secs(3));
        slowest = slowest.max(t.elapsed());
        assert!(r.is_err(), "a publish succeeded with every node down");
        attempts += 1;
        take_events(&mut c, &mut seen);
        c.run_loop(Some(Duration::from_millis(5)))
            .expect("run_loop");
    }
    let rss_growth = common::rss_bytes().saturating_sub(rss0);
    // Back.
    cluster::run_script(&[]).expect("scripts/cluster starts the nodes again");
    let back = Instant::now();
    seen.reconnected = None;
    await_reconnected(&mut c, &mut seen, Duration::from_secs(60));
    eprintln!(
        "all nodes down {DOWN:?}: {attempts} publishes failed (slowest {slowest:?}), client RSS \
         grew {rss_growth} B; reconnected {:?} after the nodes were back; events {:?}",
        back.elapsed(),
        seen.events
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a publish took {slowest:?} to fail"
    );
    assert!(rss_growth < 8 << 20, "RSS grew {rss_growth} B while down");
    c.basic_publish("", &queue, b"back")
        .wait_timeout(&mut c, ELECTION)
        .expect("publish after recovery");
    let d = c
        .wait_timeout(consumer, W)
        .expect("the restored consumer")
        .expect("not ended");
    assert_eq!(&d.body[..], b"back");
    c.close().wait_timeout(&mut c, W).expect("close");
}

/// A rolling restart of all three nodes, one by one (`stop_app` then
/// `start_app`, as an upgrade does), while one client publishes with
/// confirms and consumes with manual acks: every confirmed message is
/// processed, none lost.
#[test]
fn a_rolling_restart_loses_nothing() {
    let _serial = cluster::serial();
    let cl = cluster::cluster();
    let queue = common::unique("rec-rolling");
    let name = common::unique("rec-rolling");
    let _delete = DeleteQueues::new(&[&queue]);
    let _restore = Restore;
    let mut c = Client::with_addresses(&cl.urls, recovering(&name)).expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.queue_declare(quorum(&queue))
        .wait_timeout(&mut c, W)
        .expect("declare");
    let consumer = c.basic_consume_with(Consume::queue(&queue).prefetch(50));
    let mut seen = Seen::default();
    let mut promises: Vec<(u32, Promise<()>)> = Vec::new();
    let mut processed: HashSet<u32> = HashSet::new();
    let mut next = 0u32;
    // Publish and consume for a while around each node's restart.
    let mut step = |c: &mut Client, until: Instant, seen: &mut Seen| {
        while Instant::now() < until {
            if c.can_publish() && !c.is_closed() {
                promises.push((
                    next,
                    c.basic_publish("", &queue, next.to_string().as_bytes()),
                ));
                next += 1;
            }
            while let Ok(Some(d)) = c.wait_timeout(consumer, Duration::from_millis(2)) {
                processed.insert(d.body_str().unwrap_or("").parse().expect("an id"));
                let _ = c.basic_ack(&d);
            }
            take_events(c, seen);
        }
    };
    for i in 0..3 {
        step(&mut c, Instant::now() + Duration::from_secs(1), &mut seen);
        cluster::stop_app(i);
        step(&mut c, Instant::now() + Duration::from_secs(2), &mut seen);
        cluster::start_app(i).expect("start_app");
    }
    step(&mut c, Instant::now() + Duration::from_secs(2), &mut seen);
    // Every publish resolves; every confirmed one is processed.
    let mut confirmed = HashSet::new();
    for (i, p) in &promises {
        if c.wait_timeout(*p, ELECTION).is_ok() {
            confirmed.insert(*i);
        }
    }
    let deadline = Instant::now() + ELECTION;
    while !confirmed.is_subset(&processed) {
        assert!(
            Instant::now() < deadline,
            "confirmed but never processed: {:?}",
            confirmed
                .difference(&processed)
                .take(10)
                .collect::<Vec<_>>()
        );
        match c.wait_timeout(consumer, Duration::from_millis(200)) {
            Ok(Some(d)) => {
                processed.insert(d.body_str().unwrap_or("").parse().expect("an id"));
                let _ = c.basic_ack(&d);
            }
            Err(puka::Error::Timeout) => {}
            Ok(None) => panic!("the consumer ended"),
            Err(e) => panic!("the consumer failed: {e}"),
        }
        take_events(&mut c, &mut seen);
    }
    eprintln!(
        "rolling restart: {} published, {} confirmed, {} processed, 0 lost; events {:?}",
        promises.len(),
        confirmed.len(),
        processed.len(),
        seen.events
    );
    assert!(!confirmed.is_empty());
    c.close().wait_timeout(&mut c, W).expect("close");
}
