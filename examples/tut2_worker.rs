//! RabbitMQ tutorial 2, work queues: the worker. Takes tasks from the
//! durable queue `task_queue` one at a time (prefetch 1, so a busy worker
//! is not handed more), "works" a second per `.` in the task, and acks it
//! only when done: if the worker dies mid-task the broker gives the task to
//! another worker.
//!
//! Run several: `cargo run --example tut2_worker -- [--count N]`.

mod common;

use lexopt::ValueExt;
use puka::{Consume, QueueDeclare};
use std::time::Duration;

const USAGE: &str = "\
Usage: tut2_worker [--queue NAME] [--count N] [--timeout SECS]
                   [--ms-per-dot MS] [--url URL]

Works the tasks of the durable queue (default \"task_queue\", or $PUKA_QUEUE),
sleeping MS milliseconds (default 1000) per '.' in a task. Runs until
interrupted, or until N tasks are done; with --timeout, fails if they are not
done within SECS seconds. The broker is --url, or $AMQP_URL.
";

fn main() {
    common::main("tut2_worker", run);
}

fn run() -> common::Result {
    let mut ms_per_dot = 1000;
    let args = common::parse_args(USAGE, common::Name::Queue, "task_queue", &mut |flag, p| {
        if flag == "ms-per-dot" {
            ms_per_dot = p.value()?.parse()?;
            return Ok(true);
        }
        Ok(false)
    })?;
    let deadline = args.deadline();
    let mut client = common::connect(&args.url, "tut2_worker")?;

    let declared = client.queue_declare(QueueDeclare::named(&args.name).durable());
    client.wait(declared)?;

    // Manual acks (the default) and prefetch 1: the broker sends the next
    // task only after this one is acked, so work spreads fairly.
    let consumer = client.basic_consume_with(Consume::queue(&args.name).prefetch(1));
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    let mut done = 0;
    while !args.done(done) {
        let task = common::next_delivery(&mut client, consumer, deadline, done)?;
        let body = common::body_text(&task);
        println!(" [x] Received '{body}'");
        let dots = body.matches('.').count() as u64;
        std::thread::sleep(Duration::from_millis(dots * ms_per_dot));
        println!(" [x] Done");
        // The ack is queued here and sent by the next wait (or the close).
        client.basic_ack(&task)?;
        done += 1;
    }
    common::close(client)
}
