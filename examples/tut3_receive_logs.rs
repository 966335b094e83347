//! RabbitMQ tutorial 3, publish/subscribe: a subscriber. Gets a fresh queue
//! of its own — server-named, exclusive to this connection and deleted when
//! it closes — binds it to the fanout exchange `logs`, and prints every log
//! message published from then on.
//!
//! The setup uses `wait`; the consumer then runs as a callback driven by
//! `run_loop`.
//!
//! Run: `cargo run --example tut3_receive_logs -- [--count N]`.

mod common;

use puka::{Consume, ExchangeDeclare, QueueBind, QueueDeclare};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

const USAGE: &str = "\
Usage: tut3_receive_logs [--exchange NAME] [--count N] [--timeout SECS]
                         [--url URL]

Prints the messages published to the fanout exchange (default \"logs\", or
$PUKA_EXCHANGE) from now on. Runs until interrupted, or until N messages have
arrived; with --timeout, fails if they have not arrived within SECS seconds.
The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut3_receive_logs", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "logs", &mut |_, _| Ok(false))?;
    let mut client = common::connect(&args.url, "tut3_receive_logs")?;

    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "fanout"));
    client.wait(declared)?;

    // An empty name asks the broker to name the queue (`amq.gen-...`).
    let declared = client.queue_declare(QueueDeclare::server_named());
    let queue = client.wait(declared)?.queue;

    // The binding tells the exchange to send its messages to our queue.
    let bound = client.queue_bind(QueueBind::new(&queue, &args.name, ""));
    client.wait(bound)?;
    println!(" [*] Waiting for logs. To exit press CTRL+C");

    // The callback runs once per delivery, from run_loop.
    let received = Rc::new(Cell::new(0u64));
    let failed = Rc::new(RefCell::new(None));
    let (n, err, count) = (received.clone(), failed.clone(), args.count);
    client.basic_consume_then(Consume::queue(&queue).no_ack(), move |client, delivery| {
        match delivery {
            Ok(Some(d)) => {
                println!(" [x] {}", common::body_text(&d));
                n.set(n.get() + 1);
                if count.is_some_and(|c| n.get() >= c) {
                    client.loop_break();
                }
            }
            Ok(None) => client.loop_break(),
            Err(e) => {
                *err.borrow_mut() = Some(e);
                client.loop_break();
            }
        }
    });
    // Returns on loop_break, when the timeout passes, or when the
    // connection ends.
    client.run_loop(args.timeout)?;

    if let Some(e) = failed.take() {
        return Err(e.into());
    }
    if !args.done(received.get()) && args.count.is_some() {
        let why = if client.is_closed() {
            "connection closed"
        } else {
            "timed out"
        };
        return Err(format!("{why} after receiving {} message(s)", received.get()).into());
    }
    common::close(client)
}
