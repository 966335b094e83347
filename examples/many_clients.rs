//! Many connections in one thread: N clients in one `mio::Poll`, each
//! consuming from a queue of its own, while one more publishes a message to
//! each queue in turn. No thread per connection, no runtime: each client is
//! a `mio` source under its own token, and the loop sleeps until the
//! earliest of their timers.
//!
//! A turn costs what happened, not how many clients there are: only the
//! clients with events are touched, their registration is updated only
//! when `wants_registration_update` says so (WRITABLE interest changed, or
//! the client replaced its socket), and each client's next `poll_timeout` waits
//! in a min-heap (`puka::Deadlines`), read again after the client is touched.
//! With a thousand idle connections the loop wakes for their heartbeats
//! alone.
//!
//! ```text
//! cargo run --example many_clients -- --clients 100 --messages 1000
//! ```
//!
//! Options: `--url URL`, `--clients N` (default 10), `--messages M` (default
//! 100, spread over the queues), `--timeout SECS` (default 30).

mod common;

use mio::{Events, Poll, Token};
use puka::{Client, Consume, Deadlines, Delivery, Options, Promise, QueueDeclare};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// After anything happened to client `i`: its callbacks, its registration
/// if it wants an update, its next deadline.
fn touch(i: usize, c: &mut Client, timers: &mut Deadlines, poll: &Poll) -> std::io::Result<()> {
    c.run_any_callbacks();
    if c.wants_registration_update() {
        c.update_registration(poll.registry(), Token(i))?;
    }
    timers.schedule_client(i, c);
    Ok(())
}

fn main() {
    common::main("many_clients", run);
}

fn run() -> common::Result {
    let mut url = None;
    let mut clients = 10usize;
    let mut messages = 100u64;
    let mut timeout = Duration::from_secs(30);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        use lexopt::prelude::*;
        match arg {
            Long("url") => url = Some(parser.value()?.string()?),
            Long("clients") => clients = parser.value()?.parse::<usize>()?.max(1),
            Long("messages") | Long("count") => messages = parser.value()?.parse()?,
            Long("timeout") => timeout = Duration::from_secs_f64(parser.value()?.parse()?),
            Long("help") | Short('h') => {
                println!(
                    "Usage: many_clients [--url URL] [--clients N] [--messages M] [--timeout SECS]"
                );
                return Ok(());
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let url = common::amqp_url(url);
    let deadline = Instant::now() + timeout;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);

    // The consumers: one client, one server-named queue and one callback
    // each, all registered in the same Poll.
    let received = Rc::new(Cell::new(0u64));
    let mut consumers: Vec<Client> = Vec::with_capacity(clients);
    let mut timers = Deadlines::new();
    let mut queues = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut c = Client::with_options(
            &url,
            Options::default().connection_name(&format!("many_clients-{i}")),
        )?;
        c.handshake()
            .wait_timeout(&mut c, common::CONNECT_TIMEOUT)?;
        let q = c
            .queue_declare(QueueDeclare::server_named())
            .wait_timeout(&mut c, common::CONNECT_TIMEOUT)?
            .queue
            .to_string();
        let r = received.clone();
        let _: Promise<Delivery> =
            c.basic_consume_then(Consume::queue(&q).no_ack(), move |_, d| {
                if d.is_ok() {
                    r.set(r.get() + 1);
                }
            });
        c.update_registration(poll.registry(), Token(i))?;
        timers.schedule_client(i, &c);
        consumers.push(c);
        queues.push(q);
    }
    println!("{clients} consumers connected");

    // The publisher, driven by `wait` (it is not in the Poll).
    let mut publisher = common::connect(&url, "many_clients-publisher")?;
    let started = Instant::now();
    let mut published = 0u64;
    while received.get() < messages {
        if Instant::now() >= deadline {
            return Err(format!("{} of {messages} received in time", received.get()).into());
        }
        // Publish a batch, one message per queue in turn.
        while published < messages && published < received.get() + clients as u64 * 4 {
            let q = &queues[published as usize % clients];
            let _ = publisher.basic_publish("", q, published.to_string().as_bytes());
            published += 1;
        }
        publisher.flush(Duration::from_secs(1))?;
        // One turn of the shared loop: sleep until some client is ready or
        // the earliest timer of all of them (at most 50 ms, to publish).
        let wake = timers.timeout(Instant::now(), Duration::from_millis(50));
        poll.poll(&mut events, Some(wake))?;
        for event in events.iter() {
            let i = event.token().0;
            if let Some(c) = consumers.get_mut(i) {
                c.on_event(event);
                touch(i, c, &mut timers, &poll)?;
            }
        }
        let now = Instant::now();
        while let Some(i) = timers.pop_due(now) {
            let c = &mut consumers[i];
            if c.poll_timeout().is_some_and(|t| now >= t) {
                c.on_timer();
            }
            touch(i, c, &mut timers, &poll)?;
        }
    }
    println!(
        "{messages} messages through {clients} connections in one thread in {:.2?}",
        started.elapsed()
    );
    for c in consumers {
        common::close(c)?;
    }
    common::close(publisher)
}
