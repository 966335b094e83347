//! amiquip 0.4: a blocking API over its own I/O thread per connection
//! (RUSAGE_SELF counts it). `basic_publish` hands frames to that thread
//! without waiting, so a plain loop is pipelined; confirms arrive on a
//! crossbeam channel.

use crate::common::*;
use amiquip::{
    AmqpProperties, Auth, Channel, Confirm, Connection, ConnectionOptions, ConnectionTuning,
    ConsumerMessage, ConsumerOptions, Publish,
};
use std::time::{Duration, Instant};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Connects with TCP_NODELAY set: amiquip's own `insecure_open(url)` leaves
/// Nagle's algorithm on, which costs ~40 ms (delayed ACK) per request/reply
/// round trip of small messages (get, rpc).
fn connect(url: &str) -> Res<(Connection, Channel)> {
    let p = url_parts(url)?;
    let sock = std::net::TcpStream::connect((p.host.as_str(), p.port)).ctx("tcp connect")?;
    sock.set_nodelay(true).ctx("nodelay")?;
    let sock = mio06::net::TcpStream::from_stream(sock).ctx("mio stream")?;
    let options = ConnectionOptions::<Auth>::default()
        .auth(Auth::Plain {
            username: p.username.clone(),
            password: p.password().to_string(),
        })
        .virtual_host(p.vhost.clone());
    let mut conn = Connection::insecure_open_stream(sock, options, ConnectionTuning::default())
        .ctx("amiquip connect")?;
    let ch = conn.open_channel(None).ctx("amiquip channel")?;
    Ok((conn, ch))
}

fn close(conn: Connection, ch: Channel) -> Res<()> {
    ch.close().ctx("amiquip channel close")?;
    conn.close().ctx("amiquip close")
}

fn until_count(ch: &Channel, q: &str, n: usize) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = ch
            .queue_declare_passive(q)
            .ctx("passive declare")?
            .declared_message_count()
            .unwrap_or(0) as usize;
        if got >= n || Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub fn run(job: &Job) -> Res<Outcome> {
    let body = body(job.size);
    let q = job.queue.as_str();
    match job.scenario {
        Scenario::Publish => {
            let (conn, ch) = connect(&job.url)?;
            let m = Meter::process();
            for _ in 0..job.n {
                ch.basic_publish("", Publish::new(&body, q))
                    .ctx("publish")?;
            }
            let got = until_count(&ch, q, job.n)?;
            let out = m.outcome(got);
            close(conn, ch)?;
            Ok(out)
        }
        Scenario::Confirm | Scenario::ConfirmStream => {
            let (conn, ch) = connect(&job.url)?;
            let confirms = ch.listen_for_publisher_confirms().ctx("listen")?;
            ch.enable_publisher_confirms().ctx("confirm_select")?;
            let m = Meter::process();
            for _ in 0..job.n {
                ch.basic_publish("", Publish::new(&body, q))
                    .ctx("publish")?;
            }
            // RabbitMQ confirms one queue's messages in order: the highest
            // tag is the count.
            let (mut highest, mut nacked) = (0u64, 0u64);
            while (highest as usize) < job.n {
                match confirms
                    .recv_timeout(Duration::from_secs(60))
                    .ctx("confirm")?
                {
                    Confirm::Ack(p) => highest = highest.max(p.delivery_tag),
                    Confirm::Nack(p) => {
                        highest = highest.max(p.delivery_tag);
                        nacked += 1;
                    }
                }
            }
            let out = m.outcome((highest - nacked) as usize);
            close(conn, ch)?;
            Ok(out)
        }
        Scenario::ConsumeAck | Scenario::ConsumeNoAck => {
            let no_ack = job.scenario == Scenario::ConsumeNoAck;
            let (conn, ch) = connect(&job.url)?;
            let m = Meter::process();
            if !no_ack {
                ch.qos(0, PREFETCH, false).ctx("qos")?;
            }
            let consumer = ch
                .basic_consume(
                    q,
                    ConsumerOptions {
                        no_ack,
                        ..ConsumerOptions::default()
                    },
                )
                .ctx("consume")?;
            let mut got = 0;
            let mut bytes = 0;
            while got < job.n {
                match consumer.receiver().recv().ctx("delivery")? {
                    ConsumerMessage::Delivery(d) => {
                        bytes += d.body.len();
                        if !no_ack {
                            consumer.ack(d).ctx("ack")?;
                        }
                        got += 1;
                    }
                    other => return Err(format!("consumer ended: {other:?}")),
                }
            }
            let out = m.outcome(got);
            if bytes != job.n * job.size {
                return Err(format!("got {bytes} body bytes"));
            }
            drop(consumer);
            close(conn, ch)?;
            Ok(out)
        }
        Scenario::Get => {
            let (conn, ch) = connect(&job.url)?;
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..job.n + WARMUP {
                if i == WARMUP {
                    m = Meter::process();
                }
                let t = Instant::now();
                let g = ch.basic_get(q, false).ctx("get")?.ctx("get: queue empty")?;
                if i >= WARMUP {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                g.delivery.ack(&ch).ctx("ack")?;
            }
            let mut out = m.outcome(lat.len());
            out.lat_us = lat;
            close(conn, ch)?;
            Ok(out)
        }
        Scenario::Rpc => {
            let total = job.n + WARMUP;
            let server = {
                let url = job.url.clone();
                let q = job.queue.clone();
                std::thread::spawn(move || echo_server(&url, &q, total))
            };
            let (conn, ch) = connect(&job.url)?;
            let replies = ch
                .basic_consume(
                    REPLY_TO,
                    ConsumerOptions {
                        no_ack: true,
                        ..ConsumerOptions::default()
                    },
                )
                .ctx("consume reply-to")?;
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..total {
                if i == WARMUP {
                    m = Meter::process();
                }
                let id = i.to_string();
                let props = AmqpProperties::default()
                    .with_reply_to(REPLY_TO.to_string())
                    .with_correlation_id(id.clone());
                let t = Instant::now();
                ch.basic_publish("", Publish::with_properties(&body, q, props))
                    .ctx("publish")?;
                let d = match replies.receiver().recv().ctx("reply")? {
                    ConsumerMessage::Delivery(d) => d,
                    other => return Err(format!("reply consumer ended: {other:?}")),
                };
                let cid = d.properties.correlation_id().as_deref();
                if cid != Some(id.as_str()) {
                    return Err(format!("reply {cid:?} for {id}"));
                }
                if i >= WARMUP {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            let mut out = m.outcome(lat.len());
            out.lat_us = lat;
            server
                .join()
                .map_err(|_| "echo server panicked".to_string())??;
            drop(replies);
            close(conn, ch)?;
            Ok(out)
        }
    }
}

fn echo_server(url: &str, q: &str, total: usize) -> Res<()> {
    let (conn, ch) = connect(url)?;
    let requests = ch
        .basic_consume(
            q,
            ConsumerOptions {
                no_ack: true,
                ..ConsumerOptions::default()
            },
        )
        .ctx("consume")?;
    for _ in 0..total {
        let d = match requests.receiver().recv().ctx("request")? {
            ConsumerMessage::Delivery(d) => d,
            other => return Err(format!("request consumer ended: {other:?}")),
        };
        let reply_to = d.properties.reply_to().clone().ctx("reply_to")?;
        let mut props = AmqpProperties::default();
        if let Some(id) = d.properties.correlation_id() {
            props = props.with_correlation_id(id.clone());
        }
        ch.basic_publish("", Publish::with_properties(&d.body, reply_to, props))
            .ctx("reply")?;
    }
    drop(requests);
    close(conn, ch)
}
