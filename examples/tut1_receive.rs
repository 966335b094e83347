//! RabbitMQ tutorial 1, "Hello World!": the consumer. Declares the queue
//! `hello` and prints every message it receives.
//!
//! Run: `cargo run --example tut1_receive -- [--count N] [--timeout SECS]`.

mod common;

use puka::{Consume, QueueDeclare};

const USAGE: &str = "\
Usage: tut1_receive [--queue NAME] [--count N] [--timeout SECS] [--url URL]

Prints the messages of the queue (default \"hello\", or $PUKA_QUEUE); runs
until interrupted, or until N messages have arrived. With --timeout, fails
if they have not arrived within SECS seconds. The broker is --url, or
$AMQP_URL.
";

fn main() {
    common::main("tut1_receive", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Queue, "hello", &mut |_, _| Ok(false))?;
    let deadline = args.deadline();
    let mut client = common::connect(&args.url, "tut1_receive")?;

    let declared = client.queue_declare(QueueDeclare::named(&args.name));
    client.wait(declared)?;

    // no_ack: the broker forgets each message as soon as it sends it.
    let consumer = client.basic_consume_with(Consume::queue(&args.name).no_ack());
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    let mut received = 0;
    while !args.done(received) {
        // Each wait on a consumer's promise returns its next delivery.
        let delivery = common::next_delivery(&mut client, consumer, deadline, received)?;
        received += 1;
        println!(" [x] Received '{}'", common::body_text(&delivery));
    }
    common::close(client)
}
