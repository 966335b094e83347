//! puka: one `Client`, driven by `wait` (no threads but the RPC echo server).

use crate::common::*;
use puka::{AckTiming, BasicProperties, Client, Confirms, Consume, Options, QueueDeclare};
use std::time::{Duration, Instant};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn connect(url: &str, confirms: Confirms, ack_timing: AckTiming) -> Res<Client> {
    let mut c = Client::with_options(
        url,
        Options::default().confirms(confirms).ack_timing(ack_timing),
    )
    .ctx("puka new")?;
    let p = c.handshake();
    c.wait_timeout(p, Duration::from_secs(10))
        .ctx("puka connect")?;
    Ok(c)
}

fn close(mut c: Client) -> Res<()> {
    let p = c.close();
    c.wait(p).ctx("puka close")
}

/// Round trips (passive queue.declare) until the broker holds `n` messages.
fn until_count(c: &mut Client, queue: &str, n: usize) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = c.queue_declare(QueueDeclare::named(queue).passive());
        let got = c.wait(p).ctx("passive declare")?.message_count as usize;
        if got >= n || Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs one scenario; `ack_timing` is puka's `Options::ack_timing` (the
/// default `Prompt` for the `puka` column, `Deferred` for `puka-deferred`).
pub fn run(job: &Job, ack_timing: AckTiming) -> Res<Outcome> {
    let body = body(job.size);
    let q = job.queue.as_str();
    match job.scenario {
        Scenario::Publish => {
            let mut c = connect(&job.url, Confirms::Off, ack_timing)?;
            let m = Meter::process();
            for _ in 0..job.n {
                let _ = c.basic_publish("", q, &body); // success keeps nothing
            }
            let got = until_count(&mut c, q, job.n)?;
            let out = m.outcome(got);
            close(c)?;
            Ok(out)
        }
        Scenario::Confirm => {
            let mut c = connect(&job.url, Confirms::On, ack_timing)?;
            let m = Meter::process();
            let ps: Vec<_> = (0..job.n).map(|_| c.basic_publish("", q, &body)).collect();
            let ids: Vec<_> = ps.iter().map(|p| p.id()).collect();
            c.wait_for_all(&ids).ctx("wait_for_all")?;
            let out = m.outcome(ids.len());
            // Every promise resolved: count the acks (untimed).
            let mut ok = 0;
            for p in ps {
                if c.wait(p).is_ok() {
                    ok += 1;
                }
            }
            close(c)?;
            Ok(Outcome { count: ok, ..out })
        }
        Scenario::ConfirmStream => {
            let mut c = connect(&job.url, Confirms::On, ack_timing)?;
            let m = Meter::process();
            let mut last = None;
            for _ in 0..job.n {
                last = Some(c.basic_publish("", q, &body));
            }
            if let Some(p) = last {
                c.wait(p).ctx("last confirm")?;
            }
            let out = m.outcome(job.n);
            close(c)?;
            Ok(out)
        }
        Scenario::ConsumeAck | Scenario::ConsumeNoAck => {
            let no_ack = job.scenario == Scenario::ConsumeNoAck;
            let mut c = connect(&job.url, Confirms::Off, ack_timing)?;
            let m = Meter::process();
            let consume = if no_ack {
                Consume::queue(q).no_ack()
            } else {
                Consume::queue(q).prefetch(PREFETCH)
            };
            let consumer = c.basic_consume_with(consume);
            let mut got = 0;
            let mut bytes = 0;
            while got < job.n {
                let d = c.wait(consumer).ctx("delivery")?.ctx("consumer ended")?;
                bytes += d.body.len();
                if !no_ack {
                    c.basic_ack(&d).ctx("ack")?;
                }
                got += 1;
            }
            let out = m.outcome(got);
            if bytes != job.n * job.size {
                return Err(format!("got {bytes} body bytes"));
            }
            close(c)?;
            Ok(out)
        }
        Scenario::Get => get(job, ack_timing, Meter::process),
        Scenario::Rpc => {
            let total = job.n + WARMUP;
            let server = {
                let url = job.url.clone();
                let q = job.queue.clone();
                std::thread::spawn(move || echo_server(&url, &q, total, ack_timing))
            };
            let mut c = connect(&job.url, Confirms::Off, ack_timing)?;
            let replies = c.basic_consume_with(Consume::queue(REPLY_TO).no_ack());
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..total {
                if i == WARMUP {
                    m = Meter::process();
                }
                let id = i.to_string();
                let props = BasicProperties::default()
                    .with_reply_to(REPLY_TO)
                    .with_correlation_id(id.as_str());
                let t = Instant::now();
                let _ = c.basic_publish_with("", q, &body, &props, puka::Unroutable::Drop);
                let d = c.wait(replies).ctx("reply")?.ctx("consumer ended")?;
                if d.properties.correlation_id() != Some(id.as_str()) {
                    return Err(format!(
                        "reply {:?} for {id}",
                        d.properties.correlation_id()
                    ));
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
            close(c)?;
            Ok(out)
        }
    }
}

/// Answers `total` requests from `queue` to their `reply_to`.
fn echo_server(url: &str, queue: &str, total: usize, ack_timing: AckTiming) -> Res<()> {
    let mut c = connect(url, Confirms::Off, ack_timing)?;
    let requests = c.basic_consume_with(Consume::queue(queue).no_ack());
    for _ in 0..total {
        let d = c.wait(requests).ctx("request")?.ctx("consumer ended")?;
        let reply_to = d.properties.reply_to().ctx("reply_to")?.to_string();
        let mut props = BasicProperties::default();
        if let Some(id) = d.properties.correlation_id() {
            props = props.with_correlation_id(id);
        }
        let _ = c.basic_publish_with("", &reply_to, &d.body, &props, puka::Unroutable::Drop);
    }
    close(c)
}

/// `job.n` timed gets (after [`WARMUP`] untimed ones), each acked before the
/// next, CPU counted by `meter` (the process against a broker; the client
/// thread against the loopback server).
pub fn get(job: &Job, ack_timing: AckTiming, meter: fn() -> Meter) -> Res<Outcome> {
    let q = job.queue.as_str();
    let mut c = connect(&job.url, Confirms::Off, ack_timing)?;
    let mut lat = Vec::with_capacity(job.n);
    let mut got = 0;
    let mut m = meter();
    for i in 0..job.n + WARMUP {
        if i == WARMUP {
            m = meter();
        }
        let t = Instant::now();
        let p = c.basic_get(q);
        let d = c.wait(p).ctx("get")?.ctx("get: queue empty")?;
        if i >= WARMUP {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            got += 1;
        }
        c.basic_ack(&d).ctx("ack")?;
    }
    let mut out = m.outcome(got);
    out.lat_us = lat;
    close(c)?;
    Ok(out)
}
