//! Hello world: declare a queue, publish one message, consume it back, and
//! print each step. A synchronous script built on `wait`.
//!
//! Run: `cargo run --example hello_world` (uses `AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`).

use puka::{Client, QueueDeclare, QueueDelete};
use std::time::Duration;

fn main() {
    if let Err(e) = run() {
        eprintln!("hello_world: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), puka::Error> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let mut client = Client::new(&url)?;
    let connected = client.handshake();
    client.wait_timeout(connected, Duration::from_secs(10))?;
    println!("connected to {}", client.params());

    let queue = format!("hello-{}", std::process::id());
    let declared = client.queue_declare(QueueDeclare::named(&queue).auto_delete());
    let ok = client.wait(declared)?;
    println!(
        "declared queue {} ({} messages)",
        ok.queue, ok.message_count
    );

    let body = b"Hello world!";
    let published = client.basic_publish("", &queue, body);
    client.wait(published)?;
    println!(
        "published {:?} to {queue} (confirmed: {})",
        String::from_utf8_lossy(body),
        client.confirms_enabled()
    );

    let consumer = client.basic_consume(&queue);
    // A consumer's results are `Some(delivery)`, then `None` once it ends
    // as asked (cancelled, or the connection closed by us).
    let Some(delivery) = client.wait_timeout(consumer, Duration::from_secs(10))? else {
        unreachable!("the consumer is not cancelled yet");
    };
    println!(
        "consumed {:?} (delivery tag {}, routing key {})",
        delivery.body_str().unwrap_or("<binary>"),
        delivery.delivery_tag,
        delivery.routing_key()
    );
    client.basic_ack(&delivery)?;
    println!("acked");

    let cancelled = client.basic_cancel(consumer);
    client.wait(cancelled)?;
    assert!(client.wait(consumer)?.is_none(), "the consumer ended");
    let deleted = client.queue_delete(QueueDelete::new(&queue));
    client.wait(deleted)?;
    let closed = client.close();
    client.wait(closed)?;
    println!("closed");
    Ok(())
}
