//! RabbitMQ tutorial 7, publisher confirms: three ways to know the broker
//! has taken each message, timed.
//!
//! This client puts its publish channel in confirm mode when the broker
//! supports it, so every `basic_publish` promise resolves on the broker's
//! ack (and fails on a nack). The strategies differ only in how long the
//! program waits before publishing more:
//!
//! 1. one by one: wait for each confirm before the next publish (slow:
//!    a network round trip per message);
//! 2. in batches: publish a batch, then wait for all its confirms;
//! 3. streamed: publish everything, and count confirms in callbacks as
//!    they arrive, driven by `run_loop`.
//!
//! Run: `cargo run --release --example tut7_publisher_confirms -- [--messages N]`.

mod common;

use lexopt::ValueExt;
use puka::{Client, PromiseId, QueueDeclare, QueueDelete};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: tut7_publisher_confirms [--messages N] [--batch-size N] [--timeout SECS]
                               [--url URL]

Publishes N messages (default 10000) three times, to a fresh server-named
queue each time, waiting for the broker's confirms one by one, in batches of
--batch-size (default 100), and streamed with callbacks; prints how long
each took. Fails if a strategy takes longer than --timeout (default 60)
seconds. The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut7_publisher_confirms", run);
}

fn run() -> common::Result {
    let (mut messages, mut batch_size) = (10_000u64, 100usize);
    let args = common::parse_args(USAGE, common::Name::Queue, "", &mut |flag, p| {
        match flag {
            "messages" => messages = p.value()?.parse()?,
            "batch-size" => batch_size = p.value()?.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let timeout = args.timeout.unwrap_or(Duration::from_secs(60));
    let mut client = common::connect(&args.url, "tut7_publisher_confirms")?;
    if !client.confirms_enabled() {
        return Err("the broker does not support publisher confirms".into());
    }

    let n = messages;
    timed(&mut client, "individually", n, timeout, |c, q, d| {
        one_by_one(c, q, n, d)
    })?;
    timed(&mut client, "in batch", n, timeout, |c, q, d| {
        in_batches(c, q, n, d, batch_size)
    })?;
    timed(
        &mut client,
        "and handled confirms asynchronously",
        n,
        timeout,
        |c, q, d| streamed(c, q, n, d),
    )?;
    common::close(client)
}

/// Runs one strategy against a fresh queue, checks that the queue got all
/// `n` messages, and prints how long the publishing took.
fn timed(
    client: &mut Client,
    how: &str,
    n: u64,
    timeout: Duration,
    strategy: impl FnOnce(&mut Client, &str, Instant) -> common::Result,
) -> common::Result {
    // A fresh queue for each run; the broker names it.
    let declared = client.queue_declare(QueueDeclare::server_named());
    let queue = client.wait(declared)?.queue.to_string();

    let start = Instant::now();
    strategy(client, &queue, start + timeout)?;
    let elapsed = start.elapsed();

    // Every confirmed message must be in the queue.
    let deleted = client.queue_delete(QueueDelete::new(&queue));
    let held = client.wait(deleted)?;
    if u64::from(held) != n {
        return Err(format!("expected {n} messages in {queue}, found {held}").into());
    }
    println!("Published {n} messages {how} in {} ms", elapsed.as_millis());
    Ok(())
}

/// Waits for a promise, failing at the deadline.
fn wait_until(client: &mut Client, p: puka::Promise<()>, deadline: Instant) -> common::Result {
    client.wait_timeout(p, deadline.saturating_duration_since(Instant::now()))?;
    Ok(())
}

/// Strategy 1: publish, wait for its confirm, repeat.
fn one_by_one(client: &mut Client, queue: &str, n: u64, deadline: Instant) -> common::Result {
    for i in 0..n {
        let published = client.basic_publish("", queue, i.to_string().as_bytes());
        wait_until(client, published, deadline)?;
    }
    Ok(())
}

/// Strategy 2: publish `batch` messages, then wait for all their confirms.
fn in_batches(
    client: &mut Client,
    queue: &str,
    n: u64,
    deadline: Instant,
    batch: usize,
) -> common::Result {
    let mut outstanding = Vec::with_capacity(batch);
    for i in 0..n {
        outstanding.push(client.basic_publish("", queue, i.to_string().as_bytes()));
        if outstanding.len() == batch || i + 1 == n {
            // All results are in once wait_for_all returns; each wait
            // below then just takes one (an error for a nacked message).
            let ids: Vec<PromiseId> = outstanding.iter().map(|p| p.id()).collect();
            client.wait_for_all(&ids)?;
            for p in outstanding.drain(..) {
                wait_until(client, p, deadline)?;
            }
        }
    }
    Ok(())
}

/// Strategy 3: publish everything; a callback per message counts its
/// confirm, and the last one ends the loop.
fn streamed(client: &mut Client, queue: &str, n: u64, deadline: Instant) -> common::Result {
    if n == 0 {
        return Ok(());
    }
    let confirmed = Rc::new(Cell::new(0u64));
    let failed = Rc::new(RefCell::new(None));
    for i in 0..n {
        let (confirmed, failed) = (confirmed.clone(), failed.clone());
        client.basic_publish_then("", queue, i.to_string().as_bytes(), move |client, r| {
            match r {
                Ok(()) => confirmed.set(confirmed.get() + 1),
                Err(e) => {
                    failed.borrow_mut().get_or_insert(e);
                }
            }
            if confirmed.get() == n || failed.borrow().is_some() {
                client.loop_break();
            }
        });
    }
    client.run_loop(Some(deadline.saturating_duration_since(Instant::now())))?;
    if let Some(e) = failed.take() {
        return Err(e.into());
    }
    if confirmed.get() < n {
        return Err(format!("only {} of {n} messages confirmed in time", confirmed.get()).into());
    }
    Ok(())
}
