//! A publisher and a consumer that keep going while you kill broker nodes.
//!
//! One client, given every node of a cluster and automatic recovery,
//! publishes to a quorum queue with confirms and consumes from it, printing
//! what happens: losses, reconnections, where it is connected, and how
//! many messages were confirmed, received, and had an unknown outcome.
//!
//! ```text
//! bash scripts/cluster                        # puka-c1..3 on 5701-5703
//! cargo run --example cluster_failover        # in one terminal
//! bash scripts/cluster kill-node 1            # in another: it goes on
//! ```
//!
//! Options: `--url URL` (repeat it, or a URL with several hosts; default
//! the three nodes of scripts/cluster), `--queue NAME`, `--count N` (stop
//! after N messages received), `--timeout SECS`, `--rate N` (messages per
//! second, default 200).

mod common;

use puka::{
    Client, ConnectionEvent, Consume, Error, Options, Promise, QueueDeclare, Recovery, Requeue,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const DEFAULT_URLS: [&str; 3] = [
    "amqp://guest:guest@127.0.0.1:5701/%2f",
    "amqp://guest:guest@127.0.0.1:5702/%2f",
    "amqp://guest:guest@127.0.0.1:5703/%2f",
];

#[derive(Default)]
struct Counts {
    published: u64,
    confirmed: u64,
    unknown: u64,
    refused: u64,
    received: u64,
}

fn main() {
    common::main("cluster_failover", run);
}

fn run() -> common::Result {
    let mut urls: Vec<String> = Vec::new();
    let mut queue = "cluster-failover".to_string();
    let mut count: Option<u64> = None;
    let mut timeout: Option<Duration> = None;
    let mut rate = 200u64;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("url") => urls.push(parser.value()?.string()?),
            Long("queue") => queue = parser.value()?.string()?,
            Long("count") => count = Some(parser.value()?.parse()?),
            Long("timeout") => timeout = Some(Duration::from_secs_f64(parser.value()?.parse()?)),
            Long("rate") => rate = parser.value()?.parse::<u64>()?.max(1),
            Long("help") | Short('h') => {
                println!(
                    "Usage: cluster_failover [--url URL]... [--queue NAME] [--count N] \
                     [--timeout SECS] [--rate N]"
                );
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if urls.is_empty() {
        urls = match std::env::var("AMQP_URL") {
            Ok(u) if !u.trim().is_empty() => vec![u],
            _ => DEFAULT_URLS.iter().map(|u| u.to_string()).collect(),
        };
    }
    let options = Options::default()
        .connection_name("cluster_failover")
        .recovery(Some(
            Recovery::default()
                .initial_backoff(Duration::from_millis(200))
                .max_backoff(Duration::from_secs(2)),
        ));
    let mut client = Client::with_addresses(&urls, options)?;
    client
        .handshake()
        .wait_timeout(&mut client, common::CONNECT_TIMEOUT)?;
    println!(
        "connected to {:?}",
        client.connected_address().map(|a| &a.host)
    );
    client.set_connection_callback(|client, event| match event {
        ConnectionEvent::Disconnected(e) => println!("lost the connection: {e}"),
        ConnectionEvent::Reconnecting { attempt } => println!("reconnecting (attempt {attempt})"),
        ConnectionEvent::Reconnected { address } => println!("reconnected to {address}"),
        ConnectionEvent::Restored => println!("queue and consumer restored"),
        ConnectionEvent::RecoveryFailed { entity, error } => {
            println!("could not restore {entity}: {error}")
        }
        ConnectionEvent::Closed(e) => println!("closed: {e}"),
        _ => {
            let _ = client;
        }
    });
    // A quorum queue keeps its messages when a node dies (with 3 nodes).
    let mut declare = QueueDeclare::named(&queue).durable();
    if urls.len() > 1 || urls[0].contains(',') {
        declare = declare.argument("x-queue-type", "quorum");
    }
    client
        .queue_declare(declare)
        .wait_timeout(&mut client, common::CONNECT_TIMEOUT)?;

    let counts = Rc::new(RefCell::new(Counts::default()));
    let c = counts.clone();
    client.basic_consume_then(Consume::queue(&queue).prefetch(100), move |client, d| {
        match d {
            Ok(Some(d)) => {
                c.borrow_mut().received += 1;
                // Settled as it comes; after a loss, messages not acked in
                // time come again (at least once).
                if client.basic_ack(&d).is_err() {
                    let _ = client.basic_reject(&d, Requeue::Yes);
                }
                if count.is_some_and(|n| c.borrow().received >= n) {
                    client.loop_break();
                }
            }
            Ok(None) => {
                println!("consumer ended");
                client.loop_break();
            }
            Err(e) => {
                println!("consumer failed: {e}");
                client.loop_break();
            }
        }
    });

    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next_publish = Instant::now();
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let mut i = 0u64;
    loop {
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
        if Instant::now() >= next_publish && client.can_publish() {
            i += 1;
            let p: Promise<()> = client.basic_publish("", &queue, i.to_string().as_bytes());
            counts.borrow_mut().published += 1;
            let c = counts.clone();
            client.set_callback(p, move |_, r: Result<(), Error>| match r {
                Ok(()) => c.borrow_mut().confirmed += 1,
                Err(e) if e.is_outcome_unknown() => c.borrow_mut().unknown += 1,
                Err(_) => c.borrow_mut().refused += 1,
            });
            next_publish += interval;
        }
        let wait = next_publish
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        client.run_loop(Some(wait))?;
        if count.is_some_and(|n| counts.borrow().received >= n) {
            break;
        }
        if Instant::now() >= next_report {
            let c = counts.borrow();
            println!(
                "published {} confirmed {} unknown {} refused {} received {}",
                c.published, c.confirmed, c.unknown, c.refused, c.received
            );
            next_report += Duration::from_secs(1);
        }
    }
    {
        let c = counts.borrow();
        println!(
            "done: published {} confirmed {} unknown {} refused {} received {}",
            c.published, c.confirmed, c.unknown, c.refused, c.received
        );
    }
    common::close(client)
}
