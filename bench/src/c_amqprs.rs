//! amqprs 2 on a tokio current_thread runtime (its reader and writer tasks
//! run on the same thread). `basic_publish` only queues into the writer
//! task's channel, so a plain loop is already pipelined; confirms arrive in
//! a `ChannelCallback`.

use crate::common::*;
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let p = url_parts(url)?;
    let mut args = OpenConnectionArguments::new(&p.host, p.port, &p.username, p.password());
    args.virtual_host(&p.vhost);
    let conn = Connection::open(&args).await.ctx("amqprs connect")?;
    let ch = conn.open_channel(None).await.ctx("amqprs channel")?;
    Ok((conn, ch))
}

async fn close(conn: Connection, ch: Channel) -> Res<()> {
    ch.close().await.ctx("amqprs channel close")?;
    conn.close().await.ctx("amqprs close")
}

async fn count(ch: &Channel, q: &str) -> Res<usize> {
    let d = ch
        .queue_declare(QueueDeclareArguments::new(q).passive(true).finish())
        .await
        .ctx("passive declare")?
        .ctx("declare-ok")?;
    Ok(d.1 as usize)
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

/// Counts publisher confirms (RabbitMQ confirms one queue's messages in
/// order, so the highest tag acked is the count acked).
#[derive(Clone, Default)]
struct Confirms {
    acked: Arc<AtomicU64>,
    nacked: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl ChannelCallback for Confirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.acked.fetch_max(ack.delivery_tag(), Ordering::Relaxed);
        self.notify.notify_one();
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.nacked.fetch_add(1, Ordering::Relaxed);
        self.acked.fetch_max(nack.delivery_tag(), Ordering::Relaxed);
        self.notify.notify_one();
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

async fn run_async(job: &Job) -> Res<Outcome> {
    let body = body(job.size);
    let q = job.queue.as_str();
    let publish_args = BasicPublishArguments::new("", q);
    match job.scenario {
        Scenario::Publish => {
            let (conn, ch) = connect(&job.url).await?;
            let m = Meter::process();
            for _ in 0..job.n {
                ch.basic_publish(
                    BasicProperties::default(),
                    body.clone(),
                    publish_args.clone(),
                )
                .await
                .ctx("publish")?;
            }
            let got = until_count(&ch, q, job.n).await?;
            let out = m.outcome(got);
            close(conn, ch).await?;
            Ok(out)
        }
        Scenario::Confirm | Scenario::ConfirmStream => {
            let (conn, ch) = connect(&job.url).await?;
            let confirms = Confirms::default();
            ch.register_callback(confirms.clone())
                .await
                .ctx("callback")?;
            ch.confirm_select(ConfirmSelectArguments::new(false))
                .await
                .ctx("confirm_select")?;
            let m = Meter::process();
            for _ in 0..job.n {
                ch.basic_publish(
                    BasicProperties::default(),
                    body.clone(),
                    publish_args.clone(),
                )
                .await
                .ctx("publish")?;
            }
            while (confirms.acked.load(Ordering::Relaxed) as usize) < job.n {
                tokio::time::timeout(Duration::from_secs(60), confirms.notify.notified())
                    .await
                    .ctx("confirms")?;
            }
            let acked =
                confirms.acked.load(Ordering::Relaxed) - confirms.nacked.load(Ordering::Relaxed);
            let out = m.outcome(acked as usize);
            close(conn, ch).await?;
            Ok(out)
        }
        Scenario::ConsumeAck | Scenario::ConsumeNoAck => {
            let no_ack = job.scenario == Scenario::ConsumeNoAck;
            let (conn, ch) = connect(&job.url).await?;
            let m = Meter::process();
            if !no_ack {
                ch.basic_qos(BasicQosArguments::new(0, PREFETCH, false))
                    .await
                    .ctx("qos")?;
            }
            let args = BasicConsumeArguments::new(q, "")
                .manual_ack(!no_ack)
                .finish();
            let (_tag, mut rx) = ch.basic_consume_rx(args).await.ctx("consume")?;
            let mut got = 0;
            let mut bytes = 0;
            while got < job.n {
                let msg = rx.recv().await.ctx("delivery")?;
                bytes += msg.content.as_ref().map_or(0, Vec::len);
                if !no_ack {
                    let tag = msg.deliver.as_ref().ctx("deliver")?.delivery_tag();
                    ch.basic_ack(BasicAckArguments::new(tag, false))
                        .await
                        .ctx("ack")?;
                }
                got += 1;
            }
            let out = m.outcome(got);
            if bytes != job.n * job.size {
                return Err(format!("got {bytes} body bytes"));
            }
            close(conn, ch).await?;
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
                let (ok, _props, _body) = ch
                    .basic_get(BasicGetArguments::new(q))
                    .await
                    .ctx("get")?
                    .ctx("get: queue empty")?;
                if i >= WARMUP {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                ch.basic_ack(BasicAckArguments::new(ok.delivery_tag(), false))
                    .await
                    .ctx("ack")?;
            }
            let mut out = m.outcome(lat.len());
            out.lat_us = lat;
            close(conn, ch).await?;
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
            let args = BasicConsumeArguments::new(REPLY_TO, "")
                .manual_ack(false)
                .finish();
            let (_tag, mut replies) = ch.basic_consume_rx(args).await.ctx("consume reply-to")?;
            let mut lat = Vec::with_capacity(job.n);
            let mut m = Meter::process();
            for i in 0..total {
                if i == WARMUP {
                    m = Meter::process();
                }
                let id = i.to_string();
                let props = BasicProperties::default()
                    .with_reply_to(REPLY_TO)
                    .with_correlation_id(&id)
                    .finish();
                let t = Instant::now();
                ch.basic_publish(props, body.clone(), publish_args.clone())
                    .await
                    .ctx("publish")?;
                let d = replies.recv().await.ctx("reply")?;
                let cid = d.basic_properties.as_ref().and_then(|p| p.correlation_id());
                if cid.map(String::as_str) != Some(id.as_str()) {
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
            close(conn, ch).await?;
            Ok(out)
        }
    }
}

async fn echo_server(url: &str, q: &str, total: usize) -> Res<()> {
    let (conn, ch) = connect(url).await?;
    let args = BasicConsumeArguments::new(q, "").manual_ack(false).finish();
    let (_tag, mut requests) = ch.basic_consume_rx(args).await.ctx("consume")?;
    for _ in 0..total {
        let d = requests.recv().await.ctx("request")?;
        let p = d.basic_properties.ctx("properties")?;
        let reply_to = p.reply_to().ctx("reply_to")?.clone();
        let mut props = BasicProperties::default();
        if let Some(id) = p.correlation_id() {
            props.with_correlation_id(id);
        }
        ch.basic_publish(
            props,
            d.content.unwrap_or_default(),
            BasicPublishArguments::new("", &reply_to),
        )
        .await
        .ctx("reply")?;
    }
    close(conn, ch).await
}
