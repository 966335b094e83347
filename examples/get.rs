//! `get`: fetch one message, in the spirit of rabbitmq-c's `amqp-get`.
//! `basic.get` asks the broker for a single message (polling, unlike a
//! consumer); it prints one line with routing key, properties, headers and
//! body, and acks it.
//!
//! Exit status: 0 when a message was fetched, 2 when the queue was empty,
//! 1 on any error.
//!
//! Run: `cargo run --example get -- my_queue`.

mod common;

use lexopt::prelude::*;

const USAGE: &str = "\
Usage: get [OPTIONS] QUEUE

Fetches one message from QUEUE, prints it on one line (routing key,
properties, headers, body) and acks it.

Options:
      --requeue   give the message back to the queue instead of acking it
      --url URL   broker (default $AMQP_URL, or
                  amqp://guest:guest@127.0.0.1:5672/%2f)
  -h, --help      print this help

Exit status: 0 when a message was fetched, 2 when the queue was empty, 1 on
an error.
";

/// The exit status when the queue has no message.
const EMPTY: i32 = 2;

fn main() {
    common::main("get", run);
}

fn run() -> common::Result {
    let (mut url, mut queue, mut requeue) = (None, None, false);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Long("requeue") => requeue = true,
            Value(v) if queue.is_none() => queue = Some(v.string()?),
            _ => return Err(common::unexpected(arg)),
        }
    }
    let queue = queue.ok_or("give the QUEUE to get from (see --help)")?;
    let mut client = common::connect(&common::amqp_url(url), "get")?;

    let got = client.basic_get(&queue);
    let Some(message) = client.wait(got)? else {
        eprintln!("get: queue {} is empty", common::quote(&queue));
        common::close(client)?;
        std::process::exit(EMPTY);
    };
    println!("{}", common::describe(&message));
    if requeue {
        client.basic_reject(&message, puka::Requeue::Yes)?;
    } else {
        client.basic_ack(&message)?;
    }
    common::close(client)
}
