#![cfg(feature = "tracing")]
//! The `tracing` feature: what a connection's life looks like to a
//! subscriber, and what it never shows (the password, message bodies).

mod common;
mod support;

use puka::{Client, Options, QueueDeclare};
use std::sync::{Arc, Mutex};
use support::{delete_queue, W};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event as text: level, message and fields, and the fields of the span
/// it was in.
type Lines = Arc<Mutex<Vec<String>>>;

/// A subscriber that keeps every event and span of target `puka` as text.
struct Capture {
    lines: Lines,
    spans: Mutex<Vec<String>>,
    current: Mutex<Vec<u64>>,
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "puka"
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut t = Text(attrs.metadata().name().to_string());
        attrs.record(&mut t);
        let mut spans = self.spans.lock().unwrap();
        spans.push(t.0);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut t = Text(e.metadata().level().to_string());
        e.record(&mut t);
        let span = self
            .current
            .lock()
            .unwrap()
            .last()
            .map(|id| self.spans.lock().unwrap()[*id as usize - 1].clone())
            .unwrap_or_default();
        self.lines
            .lock()
            .unwrap()
            .push(format!("{} [{}]", t.0, span));
    }
    fn enter(&self, id: &Id) {
        self.current.lock().unwrap().push(id.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.current.lock().unwrap().pop();
    }
}

#[test]
fn a_connections_life_is_traced_without_secrets() {
    common::require_broker();
    let lines: Lines = Arc::default();
    let subscriber = Capture {
        lines: lines.clone(),
        spans: Mutex::default(),
        current: Mutex::default(),
    };
    let q = common::unique("traced");
    tracing::subscriber::with_default(subscriber, || {
        // guest's password is "guest"; the URL's must not show up either.
        let url = common::amqp_url();
        let mut c = Client::with_options(&url, Options::default().connection_name("traced-conn"))
            .expect("client");
        let p = c.handshake();
        c.wait_timeout(p, W).expect("connect");
        let p = c.queue_declare(QueueDeclare::named(&q));
        c.wait_timeout(p, W).expect("declare");
        let p = c.basic_publish("", &q, b"secret-body-bytes");
        c.wait_timeout(p, W).expect("publish");
        let consumer = c.basic_consume(&q);
        let d = c
            .wait_timeout(consumer, W)
            .expect("delivery")
            .expect("not ended");
        c.basic_ack(&d).expect("ack");
        // A channel error.
        let p = c.queue_declare(QueueDeclare::named(&common::unique("missing")).passive());
        assert!(c.wait_timeout(p, W).is_err());
        delete_queue(&mut c, &q);
        let p = c.close();
        c.wait_timeout(p, W).expect("close");
    });
    let lines = lines.lock().unwrap();
    let all = lines.join("\n");
    eprintln!("{all}");
    for want in [
        "connecting",
        "connection tuned",
        "connection open",
        "channel open",
        "consumer started",
        "channel closed by the broker",
        "closing gracefully",
        "connection closed",
    ] {
        assert!(all.contains(want), "no {want:?} event in:\n{all}");
    }
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("connection open"))
            .all(|l| l.contains("connection=traced-conn")),
        "the span carries the connection name:\n{all}"
    );
    assert!(!all.contains("guest:guest"), "credentials in the trace");
    assert!(!all.contains("secret-body"), "a message body in the trace");
}
