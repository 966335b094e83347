//! Helpers for the integration tests that drive a real broker through the
//! crate under test. Each test file does `mod common; mod support;`.
#![allow(dead_code)] // not every test file uses every helper

pub mod cluster;
#[cfg(feature = "unstable")]
pub mod fake_broker;
pub mod proxy;

use crate::common;
use puka::{
    Client, Delivery, Error, ExchangeDelete, Options, Promise, QueueDeclare, QueueDeclareOk,
    QueueDelete,
};
use std::time::Duration;

/// The bound on every wait for something that must happen.
pub const W: Duration = Duration::from_secs(10);

/// The window in which something that must NOT happen is given a chance to
/// happen (a delivery that must not come).
pub const QUIET: Duration = Duration::from_millis(700);

/// A connected client with default options (checks the broker first).
pub fn connect() -> Client {
    connect_with(Options::default())
}

/// A connected client with `options`.
pub fn connect_with(options: Options) -> Client {
    connect_url(&common::amqp_url(), options)
}

/// A connected client for `url`.
pub fn connect_url(url: &str, options: Options) -> Client {
    common::require_broker();
    let mut c = Client::with_options(url, options).expect("Client::with_options");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect");
    assert!(c.is_open());
    c
}

/// Declares queue `name` (plain: not durable, not exclusive) and checks it is
/// new and empty.
pub fn declare(c: &mut Client, name: &str) -> QueueDeclareOk {
    declare_with(c, QueueDeclare::named(name))
}

/// Declares a queue with the given arguments.
pub fn declare_with(c: &mut Client, args: QueueDeclare) -> QueueDeclareOk {
    let p = c.queue_declare(args);
    c.wait_timeout(p, W).expect("queue_declare")
}

/// The number of ready messages in `queue` (passive declare).
pub fn message_count(c: &mut Client, queue: &str) -> u32 {
    let p = c.queue_declare(QueueDeclare::named(queue).passive());
    c.wait_timeout(p, W)
        .expect("passive queue_declare")
        .message_count
}

/// The number of consumers on `queue` (passive declare).
pub fn consumer_count(c: &mut Client, queue: &str) -> u32 {
    let p = c.queue_declare(QueueDeclare::named(queue).passive());
    c.wait_timeout(p, W)
        .expect("passive queue_declare")
        .consumer_count
}

/// Publishes `body` to the default exchange for `queue` and waits for the
/// broker's confirm.
pub fn publish(c: &mut Client, queue: &str, body: &[u8]) {
    let p = c.basic_publish("", queue, body);
    c.wait_timeout(p, W).expect("basic_publish");
}

/// Deletes `queue` and returns how many messages it held.
pub fn delete_queue(c: &mut Client, queue: &str) -> u32 {
    let p = c.queue_delete(QueueDelete::new(queue));
    c.wait_timeout(p, W).expect("queue_delete")
}

/// Deletes `exchange`.
pub fn delete_exchange(c: &mut Client, exchange: &str) {
    let p = c.exchange_delete(ExchangeDelete::new(exchange));
    c.wait_timeout(p, W).expect("exchange_delete");
}

/// The next delivery of `consumer`, which must come within [`W`].
pub fn next(c: &mut Client, consumer: Promise<Delivery>) -> Delivery {
    c.wait_timeout(consumer, W)
        .expect("a delivery")
        .expect("the consumer ended")
}

/// Asserts that `consumer` receives nothing within [`QUIET`].
pub fn assert_quiet(c: &mut Client, consumer: Promise<Delivery>) {
    match c.wait_timeout(consumer, QUIET) {
        Err(Error::Timeout) => {}
        other => panic!("expected no delivery (Timeout), got {other:?}"),
    }
}

/// Closes `c` gracefully.
pub fn close(mut c: Client) {
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
    assert!(c.is_closed());
}

/// Deletes the named queues and exchanges from a fresh connection when
/// dropped, so nothing is left behind even when a test fails half-way.
/// Never panics (it may run while unwinding).
#[derive(Default)]
pub struct Cleanup {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Cleanup::default()
    }

    pub fn queue(mut self, name: &str) -> Self {
        self.queues.push(name.to_string());
        self
    }

    pub fn exchange(mut self, name: &str) -> Self {
        self.exchanges.push(name.to_string());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut c) = Client::new(&common::amqp_url()) else {
            return;
        };
        let p = c.handshake();
        if c.wait_timeout(p, W).is_err() {
            return;
        }
        // Results are taken with bounded waits; errors are ignored (the
        // test may already have deleted the thing).
        let queues: Vec<_> = self
            .queues
            .iter()
            .map(|q| c.queue_delete(QueueDelete::new(q)))
            .collect();
        let exchanges: Vec<_> = self
            .exchanges
            .iter()
            .map(|x| c.exchange_delete(ExchangeDelete::new(x)))
            .collect();
        for p in queues {
            let _ = c.wait_timeout(p, W);
        }
        for p in exchanges {
            let _ = c.wait_timeout(p, W);
        }
        let p = c.close();
        let _ = c.wait_timeout(p, W);
    }
}
