//! `delete`: remove queues, exchanges and bindings from the command line;
//! the counterpart of the `declare` example.
//!
//! Run: `cargo run --example delete -- queue my_queue`,
//! `cargo run --example delete -- exchange my_exchange`,
//! `cargo run --example delete -- binding my_queue my_exchange "kern.*"`.

mod common;

use lexopt::prelude::*;
use puka::{ExchangeDelete, QueueDelete, QueueUnbind};

const USAGE: &str = "\
Usage: delete queue NAME [--if-unused] [--if-empty]
       delete exchange NAME [--if-unused]
       delete binding QUEUE EXCHANGE [ROUTING_KEY]

Deletes a queue (with the messages it holds; their number is printed), an
exchange, or a binding.

Options:
      --if-unused   only if the queue has no consumers, or the exchange no
                    bindings (else fails with 406)
      --if-empty    only if the queue holds no messages (else fails with 406)
      --url URL     broker (default $AMQP_URL, or
                    amqp://guest:guest@127.0.0.1:5672/%2f)
  -h, --help        print this help
";

fn main() {
    common::main("delete", run);
}

fn run() -> common::Result {
    let mut url = None;
    let mut words: Vec<String> = Vec::new();
    let (mut if_unused, mut if_empty) = (false, false);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(());
            }
            Long("url") => url = Some(parser.value()?.string()?),
            Long("if-unused") => if_unused = true,
            Long("if-empty") => if_empty = true,
            Value(v) => words.push(v.string()?),
            _ => return Err(common::unexpected(arg)),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if if_empty && words.first() != Some(&"queue") {
        return Err("--if-empty applies to queues only".into());
    }
    let url = common::amqp_url(url);

    match words[..] {
        ["queue", name] => {
            let mut q = QueueDelete::new(name);
            q.if_unused = if_unused;
            q.if_empty = if_empty;
            let mut client = common::connect(&url, "delete")?;
            let deleted = client.queue_delete(q);
            let held = client.wait(deleted)?;
            println!("deleted queue {name} ({held} messages)");
            common::close(client)
        }
        ["exchange", name] => {
            let mut x = ExchangeDelete::new(name);
            x.if_unused = if_unused;
            let mut client = common::connect(&url, "delete")?;
            let deleted = client.exchange_delete(x);
            client.wait(deleted)?;
            println!("deleted exchange {name}");
            common::close(client)
        }
        ["binding", queue, exchange, ..] if words.len() <= 4 => {
            let key = words.get(3).copied().unwrap_or("");
            let mut client = common::connect(&url, "delete")?;
            let unbound = client.queue_unbind(QueueUnbind::new(queue, exchange, key));
            client.wait(unbound)?;
            println!(
                "unbound queue {queue} from exchange {exchange} with key {}",
                common::quote(key)
            );
            common::close(client)
        }
        _ => Err(
            "expected: queue NAME | exchange NAME | binding QUEUE EXCHANGE [KEY] (see --help)"
                .into(),
        ),
    }
}
