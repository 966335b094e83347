//! RabbitMQ tutorial 3, publish/subscribe: the producer. Publishes a log
//! message to the fanout exchange `logs`, which copies it to every queue
//! bound to it; the routing key is ignored. With no queue bound yet, the
//! message is simply dropped.
//!
//! Run: `cargo run --example tut3_emit_log -- [MESSAGE...]`.

mod common;

use puka::ExchangeDeclare;

const USAGE: &str = "\
Usage: tut3_emit_log [--exchange NAME] [--url URL] [MESSAGE...]

Publishes MESSAGE (default \"info: Hello World!\") to the fanout exchange
(default \"logs\", or $PUKA_EXCHANGE). The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut3_emit_log", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "logs", &mut |_, _| Ok(false))?;
    let message = match args.positional.join(" ") {
        m if m.is_empty() => "info: Hello World!".to_string(),
        m => m,
    };
    let mut client = common::connect(&args.url, "tut3_emit_log")?;

    // A fanout exchange broadcasts to all its queues.
    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "fanout"));
    client.wait(declared)?;

    let published = client.basic_publish(&args.name, "", message.as_bytes());
    client.wait(published)?;
    println!(" [x] Sent '{message}'");

    common::close(client)
}
