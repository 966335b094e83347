//! `consume`: a command-line consumer in the spirit of rabbitmq-c's
//! `amqp-consume`. Consumes from a queue — or from an exchange, through a
//! fresh server-named queue bound to it — and prints one line per message:
//! routing key, properties, headers and body.
//!
//! Run: `cargo run --example consume -- my_queue --count 10`, or
//! `cargo run --example consume -- -e amq.topic -b "#"`.

mod common;

use lexopt::prelude::*;
use puka::{Consume, QueueBind, QueueDeclare};

const USAGE: &str = "\
Usage: consume [OPTIONS] [QUEUE]

Prints one line per message consumed from QUEUE, or with --exchange from a
new server-named queue bound to that exchange (deleted on exit). Messages
are acked once printed, unless --no-ack.

Options:
  -q, --queue NAME         the queue to consume from (or give it as QUEUE)
  -e, --exchange NAME      consume what this exchange routes to a new queue
  -b, --binding-key KEY    ... bound with KEY (repeatable; default \"\")
  -c, --count N            exit after N messages
  -p, --prefetch N         at most N unacked messages at a time
  -A, --no-ack             the broker forgets each message once sent
      --timeout SECS       fail if the messages have not arrived in time
      --summary            at exit, print messages, bytes and msgs/s (since
                           consuming began) on standard error
      --stats              at exit, print the client's counters on standard
                           error
      --url URL            broker (default $AMQP_URL, or
                           amqp://guest:guest@127.0.0.1:5672/%2f)
  -h, --help               print this help

Once consuming, it says so on standard error.
";

fn main() {
    common::main("consume", run);
}

fn run() -> common::Result {
    let mut url = None;
    let (mut queue, mut exchange) = (None, None);
    let mut binding_keys = Vec::new();
    let (mut count, mut prefetch, mut no_ack, mut timeout) = (None, 0u16, false, None);
    let (mut summary, mut stats) = (false, false);

    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Short('q') | Long("queue") => queue = Some(parser.value()?.string()?),
            Value(v) if queue.is_none() => queue = Some(v.string()?),
            Short('e') | Long("exchange") => exchange = Some(parser.value()?.string()?),
            Short('b') | Long("binding-key") => binding_keys.push(parser.value()?.string()?),
            Short('c') | Long("count") => count = Some(parser.value()?.parse::<u64>()?),
            Short('p') | Long("prefetch") => prefetch = parser.value()?.parse()?,
            Short('A') | Long("no-ack") => no_ack = true,
            Long("timeout") => timeout = Some(common::parse_secs(&parser.value()?.string()?)?),
            Long("summary") => summary = true,
            Long("stats") => stats = true,
            _ => return Err(common::unexpected(arg)),
        }
    }
    if queue.is_some() == exchange.is_some() {
        return Err("give a QUEUE or an --exchange, not both (see --help)".into());
    }
    if exchange.is_none() && !binding_keys.is_empty() {
        return Err("--binding-key needs --exchange".into());
    }
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut client = common::connect(&common::amqp_url(url), "consume")?;

    let queue = match (queue, exchange) {
        (Some(q), _) => q,
        (None, Some(x)) => {
            // A queue of our own, exclusive and gone when we disconnect.
            let declared = client.queue_declare(QueueDeclare::server_named());
            let q = client.wait(declared)?.queue.to_string();
            if binding_keys.is_empty() {
                binding_keys.push(String::new());
            }
            for key in &binding_keys {
                let bound = client.queue_bind(QueueBind::new(&q, &x, key));
                client.wait(bound)?;
            }
            q
        }
        (None, None) => unreachable!("checked above"),
    };

    let mut consume = Consume::queue(&queue).prefetch(prefetch);
    if no_ack {
        consume = consume.no_ack();
    }
    let consumer = client.basic_consume_with(consume);
    eprintln!("consuming from {}", common::quote(&queue));

    let started = std::time::Instant::now();
    let (mut received, mut bytes) = (0, 0);
    let mut result = Ok(());
    while count.is_none_or(|n| received < n) {
        let d = match common::next_delivery(&mut client, consumer, deadline, received) {
            Ok(d) => d,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        println!("{}", common::describe(&d));
        if !no_ack {
            client.basic_ack(&d)?;
        }
        received += 1;
        bytes += d.body.len() as u64;
    }
    // The summary and counters are printed however the run ended (a
    // --timeout too), before its error.
    if summary {
        let line = common::summary(received, bytes, started.elapsed());
        eprintln!("consume: {line}");
    }
    if stats {
        common::print_stats("consume", &client);
    }
    result?;
    // Messages the broker sent beyond --count were not acked: closing
    // returns them to the queue.
    common::close(client)
}
