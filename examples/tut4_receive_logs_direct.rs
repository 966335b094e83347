//! RabbitMQ tutorial 4, routing: a subscriber for some severities. Binds a
//! server-named exclusive queue to the direct exchange `direct_logs` once
//! per severity given, so it gets only the messages routed with those keys.
//!
//! Run: `cargo run --example tut4_receive_logs_direct -- warning error`.

mod common;

use puka::{Consume, ExchangeDeclare, QueueBind, QueueDeclare};

const USAGE: &str = "\
Usage: tut4_receive_logs_direct [--exchange NAME] [--count N] [--timeout SECS]
                                [--url URL] SEVERITY...

Prints the messages published to the direct exchange (default
\"direct_logs\", or $PUKA_EXCHANGE) with one of the SEVERITY routing keys
(e.g. info warning error). Runs until interrupted, or until N messages have
arrived; with --timeout, fails if they have not arrived within SECS seconds.
The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut4_receive_logs_direct", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "direct_logs", &mut |_, _| {
        Ok(false)
    })?;
    if args.positional.is_empty() {
        return Err("give at least one severity, e.g. info warning error (see --help)".into());
    }
    let deadline = args.deadline();
    let mut client = common::connect(&args.url, "tut4_receive_logs_direct")?;

    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "direct"));
    client.wait(declared)?;
    let declared = client.queue_declare(QueueDeclare::server_named());
    let queue = client.wait(declared)?.queue;

    // One binding per severity: a queue may be bound many times.
    for severity in &args.positional {
        let bound = client.queue_bind(QueueBind::new(&queue, &args.name, severity));
        client.wait(bound)?;
    }
    println!(" [*] Waiting for logs. To exit press CTRL+C");

    let consumer = client.basic_consume_with(Consume::queue(&queue).no_ack());
    let mut received = 0;
    while !args.done(received) {
        let d = common::next_delivery(&mut client, consumer, deadline, received)?;
        received += 1;
        println!(" [x] {}:{}", d.routing_key(), common::body_text(&d));
    }
    common::close(client)
}
