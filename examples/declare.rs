//! `declare`: create queues, exchanges and bindings from the command line.
//! Declaring is idempotent: declaring what exists with the same flags does
//! nothing, with other flags fails (406 PRECONDITION_FAILED).
//!
//! Run: `cargo run --example declare -- queue my_queue --durable`,
//! `cargo run --example declare -- exchange my_exchange --type topic`,
//! `cargo run --example declare -- binding my_queue my_exchange "kern.*"`.
//! Its counterpart is the `delete` example.

mod common;

use lexopt::prelude::*;
use puka::{ExchangeDeclare, FieldValue, QueueBind, QueueDeclare};

const USAGE: &str = "\
Usage: declare queue [NAME] [--durable] [--auto-delete] [--arg KEY=VALUE]...
       declare exchange NAME [--type TYPE] [--durable] [--auto-delete]
                             [--internal] [--arg KEY=VALUE]...
       declare binding QUEUE EXCHANGE [ROUTING_KEY]

Declares a queue (without NAME the broker names it; the name is printed), an
exchange (TYPE: direct (default), fanout, topic, headers), or binds a queue
to an exchange.

Options:
      --durable          survives a broker restart
      --auto-delete      deleted when its last consumer (queue) or binding
                         (exchange) goes
      --internal         exchange only reachable from other exchanges
      --passive          only check that it exists (fails with 404 if not)
      --type TYPE        exchange type
      --arg KEY=VALUE    an argument, e.g. x-message-ttl=60000 (integers and
                         true/false are sent as such, the rest as strings)
      --url URL          broker (default $AMQP_URL, or
                         amqp://guest:guest@127.0.0.1:5672/%2f)
  -h, --help             print this help
";

fn main() {
    common::main("declare", run);
}

fn run() -> common::Result {
    let mut url = None;
    let mut words: Vec<String> = Vec::new();
    let (mut durable, mut auto_delete, mut internal, mut passive) = (false, false, false, false);
    let mut kind = None;
    let mut arguments: Vec<(String, FieldValue)> = Vec::new();

    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Long("durable") => durable = true,
            Long("auto-delete") => auto_delete = true,
            Long("internal") => internal = true,
            Long("passive") => passive = true,
            Long("type") => kind = Some(parser.value()?.string()?),
            Long("arg") => {
                let (k, v) = common::key_value(&parser.value()?.string()?)?;
                arguments.push((k, typed(&v)));
            }
            Value(v) => words.push(v.string()?),
            _ => return Err(common::unexpected(arg)),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let is_exchange = words.first() == Some(&"exchange");
    if kind.is_some() && !is_exchange {
        return Err("--type applies to exchanges only".into());
    }
    if internal && !is_exchange {
        return Err("--internal applies to exchanges only".into());
    }
    let url = common::amqp_url(url);

    match words[..] {
        ["queue", ..] if words.len() <= 2 => {
            let mut q = QueueDeclare::named(words.get(1).copied().unwrap_or(""));
            q.durable = durable;
            q.auto_delete = auto_delete;
            q.passive = passive;
            for (k, v) in arguments {
                q = q.argument(&k, v);
            }
            let mut client = common::connect(&url, "declare")?;
            let declared = client.queue_declare(q);
            let ok = client.wait(declared)?;
            println!(
                "declared queue {} ({} messages, {} consumers)",
                ok.queue, ok.message_count, ok.consumer_count
            );
            common::close(client)
        }
        ["exchange", name] => {
            let mut x = ExchangeDeclare::new(name, kind.as_deref().unwrap_or("direct"));
            x.durable = durable;
            x.auto_delete = auto_delete;
            x.internal = internal;
            x.passive = passive;
            for (k, v) in arguments {
                x = x.argument(&k, v);
            }
            let mut client = common::connect(&url, "declare")?;
            let declared = client.exchange_declare(x);
            client.wait(declared)?;
            println!(
                "declared exchange {name} ({})",
                kind.as_deref().unwrap_or("direct")
            );
            common::close(client)
        }
        ["binding", queue, exchange, ..] if words.len() <= 4 => {
            let key = words.get(3).copied().unwrap_or("");
            let mut b = QueueBind::new(queue, exchange, key);
            for (k, v) in arguments {
                b.arguments.insert(k.as_str(), v);
            }
            let mut client = common::connect(&url, "declare")?;
            let bound = client.queue_bind(b);
            client.wait(bound)?;
            println!(
                "bound queue {queue} to exchange {exchange} with key {}",
                common::quote(key)
            );
            common::close(client)
        }
        _ => Err(
            "expected: queue [NAME] | exchange NAME | binding QUEUE EXCHANGE [KEY] (see --help)"
                .into(),
        ),
    }
}

/// An argument value: an integer, a boolean, or else a string.
fn typed(v: &str) -> FieldValue {
    if let Ok(i) = v.parse::<i64>() {
        FieldValue::from(i)
    } else if let Ok(b) = v.parse::<bool>() {
        FieldValue::from(b)
    } else {
        FieldValue::from(v)
    }
}
