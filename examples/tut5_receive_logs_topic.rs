//! RabbitMQ tutorial 5, topics: a subscriber by pattern. Binds a
//! server-named exclusive queue to the topic exchange `topic_logs` with
//! each binding key given. In a binding key `*` matches exactly one word
//! and `#` zero or more: `kern.*`, `*.critical`, `#` (everything).
//!
//! Run: `cargo run --example tut5_receive_logs_topic -- "kern.*" "*.critical"`.

mod common;

use puka::{Consume, ExchangeDeclare, QueueBind, QueueDeclare};

const USAGE: &str = "\
Usage: tut5_receive_logs_topic [--exchange NAME] [--count N] [--timeout SECS]
                               [--url URL] BINDING_KEY...

Prints the messages published to the topic exchange (default \"topic_logs\",
or $PUKA_EXCHANGE) whose routing key matches one of the BINDING_KEYs (`*`:
one word, `#`: zero or more words). Runs until interrupted, or until N
messages have arrived; with --timeout, fails if they have not arrived within
SECS seconds. The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut5_receive_logs_topic", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "topic_logs", &mut |_, _| {
        Ok(false)
    })?;
    if args.positional.is_empty() {
        return Err("give at least one binding key, e.g. \"kern.*\" (see --help)".into());
    }
    let deadline = args.deadline();
    let mut client = common::connect(&args.url, "tut5_receive_logs_topic")?;

    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "topic"));
    client.wait(declared)?;
    let declared = client.queue_declare(QueueDeclare::server_named());
    let queue = client.wait(declared)?.queue;
    for key in &args.positional {
        let bound = client.queue_bind(QueueBind::new(&queue, &args.name, key));
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
