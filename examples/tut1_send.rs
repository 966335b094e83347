//! RabbitMQ tutorial 1, "Hello World!": the producer. Declares the queue
//! `hello` and publishes one message to it through the default exchange
//! (exchange `""`), which routes a message to the queue named by its
//! routing key.
//!
//! Run: `cargo run --example tut1_send -- [MESSAGE]` (with
//! `cargo run --example tut1_receive` in another terminal).

mod common;

use puka::QueueDeclare;

const USAGE: &str = "\
Usage: tut1_send [--queue NAME] [--url URL] [MESSAGE...]

Publishes MESSAGE (default \"Hello World!\") to the queue (default \"hello\",
or $PUKA_QUEUE). The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut1_send", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Queue, "hello", &mut |_, _| Ok(false))?;
    let message = match args.positional.join(" ") {
        m if m.is_empty() => "Hello World!".to_string(),
        m => m,
    };
    let mut client = common::connect(&args.url, "tut1_send")?;

    // Declaring is idempotent: whichever of sender and receiver starts
    // first creates the queue.
    let declared = client.queue_declare(QueueDeclare::named(&args.name));
    client.wait(declared)?;

    // The default exchange delivers to the queue named by the routing key.
    // The promise resolves when the broker confirms it has the message.
    let published = client.basic_publish("", &args.name, message.as_bytes());
    client.wait(published)?;
    println!(" [x] Sent '{message}'");

    common::close(client)
}
