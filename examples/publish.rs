//! `publish`: a command-line publisher in the spirit of rabbitmq-c's
//! `amqp-publish`. Sends a body (an argument, or standard input) to an
//! exchange with a routing key, with properties and headers from flags.
//!
//! Run: `cargo run --example publish -- -r my_queue --header k=v "hello"`.

mod common;

use lexopt::prelude::*;
use puka::{BasicProperties, Confirms, Options, PromiseId};
use std::io::Read;
use std::time::Duration;

const USAGE: &str = "\
Usage: publish [OPTIONS] [BODY]

Publishes BODY (or, without it, all of standard input) as one message.

Options:
  -e, --exchange NAME         exchange (default \"\": the default exchange,
                              which routes to the queue named by the key)
  -r, --routing-key KEY       routing key (default \"\")
      --content-type TYPE     e.g. text/plain
      --content-encoding ENC  e.g. gzip
      --header KEY=VALUE      a string header (repeatable)
      --correlation-id ID     correlation id
      --reply-to QUEUE        queue for replies
      --message-id ID         message id
      --type TYPE             message type name
      --app-id ID             application id
      --expiration MS         per-message TTL in milliseconds
      --priority N            priority (0-255)
      --persistent            delivery mode 2: written to disk in a durable queue
      --mandatory             fail when no queue takes the message (implies
                              --confirm)
      --confirm               wait for the broker to confirm each message; without
                              it a message counts as sent once written to the
                              socket, and a broker error may go unnoticed
  -c, --count N               publish the message N times (default 1); with
                              N > 1, prints progress lines and a summary
                              (messages, bytes, msgs/s) on standard error
      --progress SECS         seconds between progress lines (default 1; 0:
                              none)
      --stats                 print the client's counters on standard error
                              before closing
      --url URL               broker (default $AMQP_URL, or
                              amqp://guest:guest@127.0.0.1:5672/%2f)
  -h, --help                  print this help
";

fn main() {
    common::main("publish", run);
}

fn run() -> common::Result {
    let mut url = None;
    let (mut exchange, mut routing_key) = (String::new(), String::new());
    let mut body: Option<String> = None;
    let mut props = BasicProperties::default();
    let (mut mandatory, mut confirm, mut count) = (false, false, 1u64);
    let (mut progress_every, mut stats) = (Some(Duration::from_secs(1)), false);

    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Short('e') | Long("exchange") => exchange = parser.value()?.string()?,
            Short('r') | Long("routing-key") => routing_key = parser.value()?.string()?,
            Long("content-type") => props = props.with_content_type(parser.value()?.string()?),
            Long("content-encoding") => {
                props = props.with_content_encoding(parser.value()?.string()?)
            }
            Long("header") => {
                let (k, v) = common::key_value(&parser.value()?.string()?)?;
                props = props.with_header(k, v);
            }
            Long("correlation-id") => props = props.with_correlation_id(parser.value()?.string()?),
            Long("reply-to") => props = props.with_reply_to(parser.value()?.string()?),
            Long("message-id") => props = props.with_message_id(parser.value()?.string()?),
            Long("type") => props = props.with_kind(parser.value()?.string()?),
            Long("app-id") => props = props.with_app_id(parser.value()?.string()?),
            Long("expiration") => {
                let ms: u64 = parser.value()?.parse()?;
                props = props.with_expiration(ms.to_string());
            }
            Long("priority") => props = props.with_priority(parser.value()?.parse()?),
            Long("persistent") => props = props.persistent(),
            Long("mandatory") => mandatory = true,
            Long("confirm") => confirm = true,
            Short('c') | Long("count") => count = parser.value()?.parse()?,
            Long("progress") => {
                progress_every = common::parse_progress(&parser.value()?.string()?)?
            }
            Long("stats") => stats = true,
            Value(v) if body.is_none() => body = Some(v.string()?),
            _ => return Err(common::unexpected(arg)),
        }
    }
    let body = match body {
        Some(b) => b.into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read the body from stdin: {e}"))?;
            buf
        }
    };

    // Publisher confirms are a per-connection choice in this client: on,
    // each publish promise resolves when the broker has the message.
    let confirm = confirm || mandatory;
    let options = Options::default()
        .connection_name("publish")
        .confirms(if confirm { Confirms::On } else { Confirms::Off });
    let mut client = common::connect_with(&common::amqp_url(url), options)?;

    // Long runs say how far they got: progress lines while publishing and
    // while the confirms come in, then a summary.
    let long_run = count > 1;
    let mut progress = common::Progress::new("publish", progress_every.filter(|_| long_run));
    let mut published = Vec::new();
    for i in 1..=count {
        published.push(client.basic_publish_with(
            &exchange,
            &routing_key,
            &body,
            &props,
            if mandatory {
                puka::Unroutable::Return
            } else {
                puka::Unroutable::Drop
            },
        ));
        if i % 256 == 0 {
            progress.tick(i, || format!("{i} sent"));
        }
    }
    let ids: Vec<PromiseId> = published.iter().map(|p| p.id()).collect();
    loop {
        let Some(left) = progress.until_next() else {
            client.wait_for_all(&ids)?;
            break;
        };
        match client.wait_for_all_timeout(&ids, left.max(Duration::from_millis(1))) {
            Ok(()) => break,
            Err(puka::Error::Timeout) => {
                if confirm {
                    let confirmed = count - client.unconfirmed_count() as u64;
                    progress.tick(confirmed, || format!("{count} sent, {confirmed} confirmed"));
                } else {
                    progress.tick(count, || format!("{count} sent"));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    for p in published {
        // Fails with `no route` for an unroutable mandatory message, or
        // with the broker's error (e.g. 404 for a missing exchange).
        client.wait(p)?;
    }
    let elapsed = progress.elapsed();
    println!(
        "published {count} message(s) to exchange {} with routing key {}{}",
        common::quote(&exchange),
        common::quote(&routing_key),
        if confirm { " (confirmed)" } else { "" }
    );
    if long_run {
        let bytes = count * body.len() as u64;
        eprintln!("publish: {}", common::summary(count, bytes, elapsed));
    }
    if stats {
        common::print_stats("publish", &client);
    }
    common::close(client)
}
