//! RabbitMQ tutorial 6, RPC: the server. Takes requests (a number n) from
//! the queue `rpc_queue` and answers each with fib(n), published to the
//! request's `reply_to` queue with the request's `correlation_id`.
//!
//! Run: `cargo run --example tut6_rpc_server -- [--count N]` (and
//! `cargo run --example tut6_rpc_client -- 30` in another terminal).

mod common;

use puka::{BasicProperties, Consume, QueueDeclare};

const USAGE: &str = "\
Usage: tut6_rpc_server [--queue NAME] [--count N] [--timeout SECS] [--url URL]

Answers fib(n) requests from the queue (default \"rpc_queue\", or
$PUKA_QUEUE); exits after N requests if --count is given, and fails if they
have not arrived within --timeout seconds. The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut6_rpc_server", run);
}

/// The Fibonacci number, or None when it does not fit in a u64 (n > 93).
fn fib(n: u32) -> Option<u64> {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.checked_add(b)?);
    }
    Some(a)
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Queue, "rpc_queue", &mut |_, _| {
        Ok(false)
    })?;
    let deadline = args.deadline();
    let mut client = common::connect(&args.url, "tut6_rpc_server")?;

    let declared = client.queue_declare(QueueDeclare::named(&args.name));
    client.wait(declared)?;

    // prefetch 1: with several servers, the broker hands each one request
    // at a time.
    let consumer = client.basic_consume_with(Consume::queue(&args.name).prefetch(1));
    println!(" [x] Awaiting RPC requests");

    let mut served = 0;
    while !args.done(served) {
        let request = common::next_delivery(&mut client, consumer, deadline, served)?;
        let text = common::body_text(&request);
        let answer = match text.trim().parse::<u32>().ok().and_then(fib) {
            Some(f) => {
                println!(" [.] fib({})", text.trim());
                f.to_string()
            }
            None => {
                println!(" [.] bad request {text:?}");
                format!("error: not a number from 0 to 93: {text:?}")
            }
        };
        // Answer to the queue the client named, tagged with its
        // correlation id so it can match the answer to the question.
        let Some(reply_to) = request.properties.reply_to() else {
            println!(" [.] no reply_to, dropping the request");
            client.basic_ack(&request)?;
            served += 1;
            continue;
        };
        let mut props = BasicProperties::default();
        if let Some(id) = request.properties.correlation_id() {
            props = props.with_correlation_id(id);
        }
        let replied = client.basic_publish_with(
            "",
            reply_to,
            answer.as_bytes(),
            &props,
            puka::Unroutable::Drop,
        );
        client.wait(replied)?;
        // Ack only once the answer is safely with the broker.
        client.basic_ack(&request)?;
        served += 1;
    }
    common::close(client)
}
