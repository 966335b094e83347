//! RabbitMQ tutorial 5, topics: the producer. Publishes a log message to the
//! topic exchange `topic_logs` with a routing key of dot-separated words
//! such as `kern.critical` (`<facility>.<severity>`).
//!
//! Run: `cargo run --example tut5_emit_log_topic -- kern.critical "A critical kernel error"`

mod common;

use puka::ExchangeDeclare;

const USAGE: &str = "\
Usage: tut5_emit_log_topic [--exchange NAME] [--url URL] [ROUTING_KEY [MESSAGE...]]

Publishes MESSAGE (default \"Hello World!\") with ROUTING_KEY (default
\"anonymous.info\") to the topic exchange (default \"topic_logs\", or
$PUKA_EXCHANGE). The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut5_emit_log_topic", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "topic_logs", &mut |_, _| {
        Ok(false)
    })?;
    let routing_key = args
        .positional
        .first()
        .map_or("anonymous.info", String::as_str);
    let message = match args.positional.get(1..).unwrap_or_default().join(" ") {
        m if m.is_empty() => "Hello World!".to_string(),
        m => m,
    };
    let mut client = common::connect(&args.url, "tut5_emit_log_topic")?;

    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "topic"));
    client.wait(declared)?;

    let published = client.basic_publish(&args.name, routing_key, message.as_bytes());
    client.wait(published)?;
    println!(" [x] Sent '{routing_key}':'{message}'");

    common::close(client)
}
