//! Hello world as a callback chain driven by `run_loop`: each step starts
//! the next from its callback, and the last one breaks the loop. The same
//! steps as `hello_world`, in the other style.
//!
//! Run: `cargo run --example hello_callbacks`.

use puka::{Client, Consume, QueueDeclare};
use std::time::Duration;

fn main() {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let mut client = match Client::new(&url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hello_callbacks: {e}");
            std::process::exit(1);
        }
    };
    let queue = format!("hello-cb-{}", std::process::id());
    let connected = client.handshake();
    client.set_callback(connected, move |client, result| {
        if let Err(e) = result {
            eprintln!("connect failed: {e}");
            return client.loop_break();
        }
        println!("connected");
        let queue = queue.clone();
        client.queue_declare_then(
            QueueDeclare::named(&queue).auto_delete(),
            move |client, result| {
                let ok = match result {
                    Ok(ok) => ok,
                    Err(e) => {
                        eprintln!("declare failed: {e}");
                        return client.loop_break();
                    }
                };
                println!("declared {}", ok.queue);
                let queue = queue.clone();
                client.basic_publish_then("", &ok.queue, b"Hello world!", move |client, r| {
                    if let Err(e) = r {
                        eprintln!("publish failed: {e}");
                        return client.loop_break();
                    }
                    println!("published");
                    client.basic_consume_then(Consume::queue(&queue), |client, delivery| {
                        match delivery {
                            Ok(Some(d)) => {
                                println!("consumed {:?}", d.body_str().unwrap_or("<binary>"));
                                if let Err(e) = client.basic_ack(&d) {
                                    eprintln!("ack failed: {e}");
                                }
                            }
                            Ok(None) => println!("consumer ended"),
                            Err(e) => eprintln!("consume failed: {e}"),
                        }
                        client.loop_break();
                    });
                });
            },
        );
    });
    if let Err(e) = client.run_loop(Some(Duration::from_secs(10))) {
        eprintln!("hello_callbacks: {e}");
        std::process::exit(1);
    }
    let closed = client.close();
    match client.wait_timeout(closed, Duration::from_secs(5)) {
        Ok(()) => println!("closed"),
        Err(e) => {
            eprintln!("close failed: {e}");
            std::process::exit(1);
        }
    }
}
