//! RabbitMQ tutorial 2, work queues: the producer. Publishes a task to the
//! durable queue `task_queue` as a persistent message, so that neither the
//! queue nor the task is lost if the broker restarts. Each `.` in the task
//! stands for a second of work.
//!
//! Run: `cargo run --example tut2_new_task -- First message.`

mod common;

use puka::{BasicProperties, QueueDeclare};

const USAGE: &str = "\
Usage: tut2_new_task [--queue NAME] [--url URL] [TASK...]

Publishes TASK (default \"Hello World!\") as a persistent message to the
durable queue (default \"task_queue\", or $PUKA_QUEUE). The broker is --url,
or $AMQP_URL.
";

fn main() {
    common::main("tut2_new_task", run);
}

fn run() -> common::Result {
    let args = common::parse_args(USAGE, common::Name::Queue, "task_queue", &mut |_, _| {
        Ok(false)
    })?;
    let message = match args.positional.join(" ") {
        m if m.is_empty() => "Hello World!".to_string(),
        m => m,
    };
    let mut client = common::connect(&args.url, "tut2_new_task")?;

    // durable: the queue survives a broker restart. Both sides must
    // declare it with the same flags, or the broker refuses (406).
    let declared = client.queue_declare(QueueDeclare::named(&args.name).durable());
    client.wait(declared)?;

    // persistent (delivery_mode 2): the broker writes the message to disk.
    let props = BasicProperties::default().persistent();
    let published = client.basic_publish_with(
        "",
        &args.name,
        message.as_bytes(),
        &props,
        puka::Unroutable::Drop,
    );
    // With publisher confirms the promise resolves once the broker has
    // taken responsibility for the message.
    client.wait(published)?;
    println!(" [x] Sent '{message}'");

    common::close(client)
}
