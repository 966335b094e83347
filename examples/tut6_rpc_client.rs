//! RabbitMQ tutorial 6, RPC: the client. Sends a request n to `rpc_queue`
//! and waits for the answer fib(n).
//!
//! Replies come through RabbitMQ's direct reply-to: the pseudo-queue
//! `amq.rabbitmq.reply-to` needs no declaring. The client consumes from it
//! (with no_ack, as the broker requires) *before* publishing the request
//! with `reply_to = "amq.rabbitmq.reply-to"`; the broker routes the answer
//! straight back to this connection. The `correlation_id` tells which
//! request an answer belongs to.
//!
//! With `--callback-queue` it uses the tutorial's original scheme instead: a
//! server-named, exclusive queue of its own as the reply queue.
//!
//! Run: `cargo run --example tut6_rpc_client -- [N]` (default 30).

mod common;

use puka::{BasicProperties, Consume, QueueDeclare};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage: tut6_rpc_client [--queue NAME] [--callback-queue] [--timeout SECS]
                       [--url URL] [N]

Asks the RPC server on the queue (default \"rpc_queue\", or $PUKA_QUEUE) for
fib(N) (default 30) and prints the answer. Replies come by direct reply-to
(amq.rabbitmq.reply-to), or with --callback-queue through a server-named
exclusive queue. Fails after --timeout seconds (default 30). The broker is
--url, or $AMQP_URL.
";

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn main() {
    common::main("tut6_rpc_client", run);
}

fn run() -> common::Result {
    let mut callback_queue = false;
    let args = common::parse_args(USAGE, common::Name::Queue, "rpc_queue", &mut |flag, _| {
        callback_queue |= flag == "callback-queue";
        Ok(flag == "callback-queue")
    })?;
    let n = args.positional.first().map_or("30", String::as_str);
    let deadline = Some(Instant::now() + args.timeout.unwrap_or(Duration::from_secs(30)));
    let mut client = common::connect(&args.url, "tut6_rpc_client")?;

    // 1. Consume from the direct reply-to pseudo-queue, with no_ack (or
    //    from a fresh exclusive queue of our own).
    let reply_to = if callback_queue {
        let declared = client.queue_declare(QueueDeclare::server_named());
        client.wait(declared)?.queue.to_string()
    } else {
        REPLY_TO.to_string()
    };
    let replies = client.basic_consume_with(Consume::queue(&reply_to).no_ack());

    // 2. Publish the request, naming the reply queue and an id of our own.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let correlation_id = format!("{}-{nanos}", std::process::id());
    let props = BasicProperties::default()
        .with_reply_to(reply_to.as_str())
        .with_correlation_id(correlation_id.as_str());
    println!(" [x] Requesting fib({n})");
    let published =
        client.basic_publish_with("", &args.name, n.as_bytes(), &props, puka::Unroutable::Drop);
    client.wait(published)?;

    // 3. Wait for the reply that carries our correlation id.
    loop {
        let reply = common::next_delivery(&mut client, replies, deadline, 0)?;
        if reply.properties.correlation_id() == Some(correlation_id.as_str()) {
            println!(" [.] Got {}", common::body_text(&reply));
            break;
        }
    }
    common::close(client)
}
