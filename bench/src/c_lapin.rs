//! lapin 4 on a tokio current_thread runtime (lapin adds its own I/O-loop
//! thread; RUSAGE_SELF counts it).
//!
//! Publishing is pipelined: up to `WINDOW` `basic_publish` futures (each
//! awaiting its frames being sent and, with confirms, its confirmation) run
//! at once in a `FuturesUnordered`, the way to get throughput from lapin's
//! API. Acks are awaited one by one, as lapin's docs do.

use crate::common::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

const WINDOW: usize = 1024;
const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn rt() -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ctx("runtime")
}

pub fn run(job: &Job) -> Res<Outcome> {
    rt()?.block_on(run_async(job))
}

async fn connect(url: &str) -> Res<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .ctx("lapin connect")?;
    let ch = conn.create_channel().await.ctx("lapin channel")?;
    Ok((conn, ch))
}

async fn close(conn: Connection) -> Res<()> {
    conn.close(200, "bye".into()).await.ctx("lapin close")
}

async fn count(ch: &Channel, q: &str) -> Res<usize> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let d = ch
        .queue_declare(q.into(), opts, FieldTable::default())
        .await
        .ctx("passive declare")?;
    Ok(d.message_count() as usize)
}

async fn until_count(ch: &Channel, q: &str, n: usize) -> Res<usize> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = count(ch, q).await?;
        if got >= n || Instant::now() > deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Publishes n messages with up to WINDOW in flight; returns the acks
/// (or, without confirms, the publishes sent).
async fn publish_window(ch: &Channel, q: &str, n: usize, body: &[u8]) -> Res<usize> {
    let mut acked = 0;
    let one = || async {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await?;
        Ok::<bool, lapin::Error>(confirm.await?.is_nack())
    };
    let mut inflight = FuturesUnordered::new();
    for _ in 0..n {
        if inflight.len() >= WINDOW {
            if let Some(r) = inflight.next().await {
                let nack = nacked(r)?;
                acked += usize::from(!nack);
            }
        }
        inflight.push(one());
    }
    while let Some(c) = inflight.next().await {
        acked += usize::from(!nacked(c)?);
    }
    Ok(acked)
}

fn nacked(r: Result<bool, lapin::Error>) -> Res<bool> {
    r.ctx("publish")
}

async fn run_async(job: &Job) -> Res<Outcome> {
    let body = body(job.size);
    let q = job.queue.as_str();
    match job.scenario {
        Scenario::Publish => {
            let (conn, ch) = connect(&job.url).await?;
            let m = Meter::process();
            publish_window(&ch, q, job.n, &body).await?;
            let got = until_count(&ch, q, job.n).await?;
            let out = m.outcome(got);
            close(conn).await?;
            Ok(out)
        }
        Scenario::Confirm | Scenario::ConfirmStream => {
            let (conn, ch) = connect(&job.url).await?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .ctx("confirm_select")?;
            let m = Meter::process();
            let acked = publish_window(&ch, q, job.n, &body).await?;
            ch.wait_for_confirms().await.ctx("wait_for_confirms")?;
            let out = m.outcome(acked);
            close(conn).await?;
            Ok(out)
        }
        Scenario::ConsumeAck | Scenario::ConsumeNoAck => {
            let no_ack = job.scenario == Scenario::ConsumeNoAck;
            let (conn, ch) = connect(&job.url).await?;
            let m = Meter::process();
            if !no_ack {
                ch.basic_qos(PREFETCH, BasicQosOptions::default())
                    .await
                    .ctx("qos")?;
            }
            let opts = BasicConsumeOptions {
                no_ack,
                ..Default::default()
            };
            let mut consumer = ch
                .basic_consume(q.into(), "".into(), opts, FieldTable::default())
                .await
                .ctx("consume")?;
            let mut got = 0;
            let mut bytes = 0;
            while got < job.n {
                let d = consumer.next().await.ctx("stream")?.ctx("delivery")?;
                bytes += d.data.len();
                if !no_ack {
                    d.ack(BasicAckOptions::default()).await.ctx("ack")?;
                }
                got += 1;
            }
            let out = m.outcome(got);
            if bytes != job.n * job.size {
                return Err(format!("got {bytes} body bytes"));
            }
            close(conn).await?;
            Ok(out)
        }
        Scenario::Get => {
            let (conn, ch) = connect(&job.url).await?;
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..job.n + WARMUP {
                if i == WARMUP {
                    m = Meter::process();
                }
                let t = Instant::now();
                let d = ch
                    .basic_get(q.into(), BasicGetOptions { no_ack: false })
                    .await
                    .ctx("get")?
                    .ctx("get: queue empty")?;
                if i >= WARMUP {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                d.ack(BasicAckOptions::default()).await.ctx("ack")?;
            }
            let mut out = m.outcome(lat.len());
            out.lat_us = lat;
            close(conn).await?;
            Ok(out)
        }
        Scenario::Rpc => {
            let total = job.n + WARMUP;
            let server = {
                let url = job.url.clone();
                let q = job.queue.clone();
                std::thread::spawn(move || rt()?.block_on(echo_server(&url, &q, total)))
            };
            let (conn, ch) = connect(&job.url).await?;
            let opts = BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            };
            let mut replies = ch
                .basic_consume(REPLY_TO.into(), "".into(), opts, FieldTable::default())
                .await
                .ctx("consume reply-to")?;
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..total {
                if i == WARMUP {
                    m = Meter::process();
                }
                let id = i.to_string();
                let props = BasicProperties::default()
                    .with_reply_to(REPLY_TO.into())
                    .with_correlation_id(id.as_str().into());
                let t = Instant::now();
                ch.basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .ctx("publish")?
                .await
                .ctx("publish")?;
                let d = replies.next().await.ctx("stream")?.ctx("reply")?;
                let cid = d.properties.correlation_id().as_ref().map(|s| s.as_str());
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
            close(conn).await?;
            Ok(out)
        }
    }
}

async fn echo_server(url: &str, q: &str, total: usize) -> Res<()> {
    let (conn, ch) = connect(url).await?;
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut requests = ch
        .basic_consume(q.into(), "".into(), opts, FieldTable::default())
        .await
        .ctx("consume")?;
    for _ in 0..total {
        let d = requests.next().await.ctx("stream")?.ctx("request")?;
        let reply_to = d.properties.reply_to().clone().ctx("reply_to")?;
        let mut props = BasicProperties::default();
        if let Some(id) = d.properties.correlation_id() {
            props = props.with_correlation_id(id.clone());
        }
        ch.basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            &d.data,
            props,
        )
        .await
        .ctx("reply")?
        .await
        .ctx("reply")?;
    }
    close(conn).await
}
