//! RabbitMQ tutorial 4, routing: the producer. Publishes a log message to
//! the direct exchange `direct_logs` with its severity as the routing key;
//! a direct exchange delivers it to the queues bound with exactly that key.
//!
//! Run: `cargo run --example tut4_emit_log_direct -- error "Run. Run. Or it will explode."`

mod common;

use puka::ExchangeDeclare;

const USAGE: &str = "\
Usage: tut4_emit_log_direct [--exchange NAME] [--url URL] [SEVERITY [MESSAGE...]]

Publishes MESSAGE (default \"Hello World!\") with routing key SEVERITY
(default \"info\") to the direct exchange (default \"direct_logs\", or
$PUKA_EXCHANGE). The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut4_emit_log_direct", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Exchange, "direct_logs", &mut |_, _| {
        Ok(false)
    })?;
    let severity = args.positional.first().map_or("info", String::as_str);
    let message = match args.positional.get(1..).unwrap_or_default().join(" ") {
        m if m.is_empty() => "Hello World!".to_string(),
        m => m,
    };
    let mut client = common::connect(&args.url, "tut4_emit_log_direct")?;

    let declared = client.exchange_declare(ExchangeDeclare::new(&args.name, "direct"));
    client.wait(declared)?;

    // The severity is the routing key.
    let published = client.basic_publish(&args.name, severity, message.as_bytes());
    client.wait(published)?;
    println!(" [x] Sent '{severity}':'{message}'");

    common::close(client)
}
