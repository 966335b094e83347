//! Exchange types and exchange features against a real broker: routing by
//! direct, fanout, topic and headers exchanges, exchange-to-exchange
//! bindings, `if_unused` deletes, internal and alternate exchanges.
//!
//! Publishes are confirmed, so once a publish resolves the message is in
//! every queue it was routed to; which queues hold what is then read back
//! with `basic.get`. Unroutable publishes are made mandatory, so "routed
//! nowhere" is an exact `NoRoute` rather than an absence.

mod common;
mod support;

use puka::{
    BasicProperties, Client, Error, ExchangeBind, ExchangeDeclare, ExchangeDelete, ExchangeUnbind,
    FieldTable, QueueBind, QueueUnbind,
};
use support::{close, connect, declare, delete_exchange, delete_queue};
use support::{Cleanup, W};

fn declare_exchange(c: &mut Client, args: ExchangeDeclare) {
    let p = c.exchange_declare(args);
    c.wait_timeout(p, W).expect("exchange_declare");
}

fn bind(c: &mut Client, args: QueueBind) {
    let p = c.queue_bind(args);
    c.wait_timeout(p, W).expect("queue_bind");
}

/// Publishes `body` (mandatory, confirmed) and expects it routed somewhere.
fn routed(c: &mut Client, exchange: &str, key: &str, body: &str) {
    publish_headers(c, exchange, key, body, None).expect("publish must be routed");
}

/// Publishes `body` (mandatory, confirmed) and expects `NoRoute`.
fn unroutable(c: &mut Client, exchange: &str, key: &str, body: &str) {
    match publish_headers(c, exchange, key, body, None) {
        Err(Error::NoRoute(r)) => assert_eq!(r.code, 312),
        other => panic!("{body:?} via {key:?}: expected NoRoute, got {other:?}"),
    }
}

fn publish_headers(
    c: &mut Client,
    exchange: &str,
    key: &str,
    body: &str,
    headers: Option<FieldTable>,
) -> Result<(), Error> {
    let props = match headers {
        Some(h) => BasicProperties::default().with_headers(h),
        None => BasicProperties::default(),
    };
    let p = c.basic_publish_with(
        exchange,
        key,
        body.as_bytes(),
        &props,
        puka::Unroutable::Return,
    );
    c.wait_timeout(p, W)
}

/// Every message in `queue`, in order (taken with acked `basic.get`s).
fn drain(c: &mut Client, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let p = c.basic_get_no_ack(queue);
        match c.wait_timeout(p, W).expect("basic_get") {
            Some(d) => out.push(d.body_str().expect("utf-8 body").to_string()),
            None => return out,
        }
    }
}

#[test]
fn direct_exchange_routes_by_exact_key() {
    common::require_broker();
    let x = common::unique("direct-x");
    let (qa, qb) = (common::unique("direct-a"), common::unique("direct-b"));
    let _g = Cleanup::new().exchange(&x).queue(&qa).queue(&qb);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&x, "direct"));
    declare(&mut c, &qa);
    declare(&mut c, &qb);
    bind(&mut c, QueueBind::new(&qa, &x, "a"));
    bind(&mut c, QueueBind::new(&qb, &x, "b"));
    bind(&mut c, QueueBind::new(&qb, &x, "shared"));
    bind(&mut c, QueueBind::new(&qa, &x, "shared"));

    routed(&mut c, &x, "a", "to-a");
    routed(&mut c, &x, "b", "to-b");
    routed(&mut c, &x, "shared", "to-both");
    unroutable(&mut c, &x, "c", "to-nobody");
    unroutable(&mut c, &x, "A", "case-sensitive");
    assert_eq!(drain(&mut c, &qa), ["to-a", "to-both"]);
    assert_eq!(drain(&mut c, &qb), ["to-b", "to-both"]);

    // Unbinding takes effect.
    let p = c.queue_unbind(QueueUnbind::new(&qa, &x, "a"));
    c.wait_timeout(p, W).expect("unbind");
    unroutable(&mut c, &x, "a", "unbound");
    assert!(drain(&mut c, &qa).is_empty());

    delete_exchange(&mut c, &x);
    assert_eq!(delete_queue(&mut c, &qa), 0);
    assert_eq!(delete_queue(&mut c, &qb), 0);
    close(c);
}

#[test]
fn fanout_exchange_ignores_the_key() {
    common::require_broker();
    let x = common::unique("fanout-x");
    let qs: Vec<String> = (0..3)
        .map(|i| common::unique(&format!("fanout{i}")))
        .collect();
    let _g = qs
        .iter()
        .fold(Cleanup::new().exchange(&x), |g, q| g.queue(q));
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&x, "fanout"));
    for (i, q) in qs.iter().enumerate() {
        declare(&mut c, q);
        // The binding key doesn't matter either.
        bind(&mut c, QueueBind::new(q, &x, &format!("ignored-{i}")));
    }
    routed(&mut c, &x, "", "one");
    routed(&mut c, &x, "anything.at.all", "two");
    for q in &qs {
        assert_eq!(drain(&mut c, q), ["one", "two"]);
    }
    delete_exchange(&mut c, &x);
    for q in &qs {
        assert_eq!(delete_queue(&mut c, q), 0);
    }
    close(c);
}

#[test]
fn topic_exchange_star_and_hash() {
    common::require_broker();
    let x = common::unique("topic-x");
    let (q1, q2) = (common::unique("topic-1"), common::unique("topic-2"));
    let _g = Cleanup::new().exchange(&x).queue(&q1).queue(&q2);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&x, "topic"));
    declare(&mut c, &q1);
    declare(&mut c, &q2);
    // The RabbitMQ tutorial's bindings.
    bind(&mut c, QueueBind::new(&q1, &x, "*.orange.*"));
    bind(&mut c, QueueBind::new(&q2, &x, "*.*.rabbit"));
    bind(&mut c, QueueBind::new(&q2, &x, "lazy.#"));

    routed(&mut c, &x, "quick.orange.rabbit", "quick.orange.rabbit");
    routed(&mut c, &x, "lazy.orange.elephant", "lazy.orange.elephant");
    routed(&mut c, &x, "quick.orange.fox", "quick.orange.fox");
    routed(&mut c, &x, "lazy.brown.fox", "lazy.brown.fox");
    // Matches both of q2's bindings, delivered once.
    routed(&mut c, &x, "lazy.pink.rabbit", "lazy.pink.rabbit");
    // `#` matches zero words too.
    routed(&mut c, &x, "lazy", "lazy");
    routed(
        &mut c,
        &x,
        "lazy.orange.male.rabbit",
        "lazy.orange.male.rabbit",
    );
    unroutable(&mut c, &x, "quick.brown.fox", "quick.brown.fox");
    // `*` is exactly one word.
    unroutable(&mut c, &x, "orange", "orange");
    unroutable(
        &mut c,
        &x,
        "quick.orange.male.rabbit",
        "quick.orange.male.rabbit",
    );
    unroutable(&mut c, &x, "quick.orange", "quick.orange");

    assert_eq!(
        drain(&mut c, &q1),
        [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "quick.orange.fox"
        ]
    );
    assert_eq!(
        drain(&mut c, &q2),
        [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "lazy",
            "lazy.orange.male.rabbit"
        ]
    );
    delete_exchange(&mut c, &x);
    assert_eq!(delete_queue(&mut c, &q1), 0);
    assert_eq!(delete_queue(&mut c, &q2), 0);
    close(c);
}

#[test]
fn headers_exchange_all_and_any() {
    common::require_broker();
    let x = common::unique("headers-x");
    let (all, any) = (common::unique("hdr-all"), common::unique("hdr-any"));
    let _g = Cleanup::new().exchange(&x).queue(&all).queue(&any);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&x, "headers"));
    declare(&mut c, &all);
    declare(&mut c, &any);
    let wanted = FieldTable::new()
        .with("format", "pdf")
        .with("type", "report");
    bind(
        &mut c,
        QueueBind::new(&all, &x, "").arguments(wanted.clone().with("x-match", "all")),
    );
    bind(
        &mut c,
        QueueBind::new(&any, &x, "").arguments(wanted.with("x-match", "any")),
    );

    let send = |c: &mut Client, body: &str, h: FieldTable| {
        // The routing key plays no part.
        publish_headers(c, &x, "ignored", body, Some(h))
    };
    send(
        &mut c,
        "both",
        FieldTable::new()
            .with("type", "report")
            .with("format", "pdf"),
    )
    .expect("both match");
    send(
        &mut c,
        "both-plus-extra",
        FieldTable::new()
            .with("format", "pdf")
            .with("type", "report")
            .with("year", 2024i32),
    )
    .expect("extra headers don't matter");
    send(
        &mut c,
        "format-only",
        FieldTable::new().with("format", "pdf"),
    )
    .expect("any matches");
    send(
        &mut c,
        "type-only",
        FieldTable::new()
            .with("type", "report")
            .with("format", "zip"),
    )
    .expect("any matches");
    assert!(matches!(
        send(&mut c, "neither", FieldTable::new().with("type", "log")),
        Err(Error::NoRoute(_))
    ));
    assert!(matches!(
        send(&mut c, "no-headers", FieldTable::new()),
        Err(Error::NoRoute(_))
    ));
    // RabbitMQ compares header values without their type tags: a byte
    // array `pdf` matches the string `pdf`.
    send(
        &mut c,
        "byte-array-format",
        FieldTable::new().with(
            "format",
            puka::FieldValue::ByteArray(bytes::Bytes::from_static(b"pdf")),
        ),
    )
    .expect("any matches whatever the type");

    assert_eq!(drain(&mut c, &all), ["both", "both-plus-extra"]);
    assert_eq!(
        drain(&mut c, &any),
        [
            "both",
            "both-plus-extra",
            "format-only",
            "type-only",
            "byte-array-format"
        ]
    );
    delete_exchange(&mut c, &x);
    assert_eq!(delete_queue(&mut c, &all), 0);
    assert_eq!(delete_queue(&mut c, &any), 0);
    close(c);
}

#[test]
fn exchange_to_exchange_bind_and_unbind() {
    common::require_broker();
    let src = common::unique("e2e-src");
    let dst = common::unique("e2e-dst");
    let q = common::unique("e2e-q");
    let _g = Cleanup::new().exchange(&src).exchange(&dst).queue(&q);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&src, "topic"));
    declare_exchange(&mut c, ExchangeDeclare::new(&dst, "direct"));
    declare(&mut c, &q);
    bind(&mut c, QueueBind::new(&q, &dst, "a.b"));
    unroutable(&mut c, &src, "a.b", "before bind");

    let p = c.exchange_bind(ExchangeBind::new(&dst, &src, "a.*"));
    c.wait_timeout(p, W).expect("exchange_bind");
    routed(&mut c, &src, "a.b", "through");
    // Passes the source's binding, not the destination's.
    unroutable(&mut c, &src, "a.c", "stops at dst");
    unroutable(&mut c, &src, "x.b", "stops at src");
    // The destination still takes direct publishes.
    routed(&mut c, &dst, "a.b", "direct");
    assert_eq!(drain(&mut c, &q), ["through", "direct"]);

    let p = c.exchange_unbind(ExchangeUnbind::new(&dst, &src, "a.*"));
    c.wait_timeout(p, W).expect("exchange_unbind");
    unroutable(&mut c, &src, "a.b", "after unbind");
    assert!(drain(&mut c, &q).is_empty());

    // Binding to a missing exchange is NotFound.
    let missing = common::unique("e2e-missing");
    let p = c.exchange_bind(ExchangeBind::new(&dst, &missing, "#"));
    assert!(matches!(c.wait_timeout(p, W), Err(Error::NotFound(_))));

    delete_exchange(&mut c, &src);
    delete_exchange(&mut c, &dst);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn exchange_delete_if_unused() {
    common::require_broker();
    let x = common::unique("if-unused-x");
    let q = common::unique("if-unused-q");
    let _g = Cleanup::new().exchange(&x).queue(&q);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&x, "fanout"));
    declare(&mut c, &q);
    bind(&mut c, QueueBind::new(&q, &x, ""));

    let p = c.exchange_delete(ExchangeDelete::new(&x).if_unused());
    let err = c
        .wait_timeout(p, W)
        .expect_err("delete of a bound exchange");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    let r = err.reply().unwrap();
    assert_eq!(r.code, 406);
    assert!(r.text.starts_with("PRECONDITION_FAILED"), "{r}");
    // Still there and routing.
    routed(&mut c, &x, "", "still bound");
    assert_eq!(drain(&mut c, &q), ["still bound"]);

    // Unbound, the same delete works.
    let p = c.queue_unbind(QueueUnbind::new(&q, &x, ""));
    c.wait_timeout(p, W).expect("unbind");
    let p = c.exchange_delete(ExchangeDelete::new(&x).if_unused());
    c.wait_timeout(p, W).expect("delete of an unused exchange");
    let p = c.exchange_declare(ExchangeDeclare::new(&x, "fanout").passive());
    assert!(matches!(c.wait_timeout(p, W), Err(Error::NotFound(_))));
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn internal_exchange_refuses_publishes() {
    common::require_broker();
    let public = common::unique("public-x");
    let internal = common::unique("internal-x");
    let q = common::unique("internal-q");
    let _g = Cleanup::new()
        .exchange(&public)
        .exchange(&internal)
        .queue(&q);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&internal, "fanout").internal());
    declare_exchange(&mut c, ExchangeDeclare::new(&public, "fanout"));
    declare(&mut c, &q);
    bind(&mut c, QueueBind::new(&q, &internal, ""));
    let p = c.exchange_bind(ExchangeBind::new(&internal, &public, ""));
    c.wait_timeout(p, W).expect("exchange_bind");

    let p = c.basic_publish(&internal, "", b"direct");
    let err = c.wait_timeout(p, W).expect_err("publish to internal");
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    let r = err.reply().unwrap();
    assert_eq!(r.code, 403);
    assert!(r.text.contains("internal"), "{r}");
    assert!(c.is_open());

    // Through the public exchange it arrives.
    routed(&mut c, &public, "", "via public");
    assert_eq!(drain(&mut c, &q), ["via public"]);
    delete_exchange(&mut c, &public);
    delete_exchange(&mut c, &internal);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn alternate_exchange_takes_unroutable_messages() {
    common::require_broker();
    let x = common::unique("ae-main");
    let ae = common::unique("ae-alt");
    let (q, qae) = (common::unique("ae-q"), common::unique("ae-unrouted"));
    let _g = Cleanup::new()
        .exchange(&x)
        .exchange(&ae)
        .queue(&q)
        .queue(&qae);
    let mut c = connect();
    declare_exchange(&mut c, ExchangeDeclare::new(&ae, "fanout"));
    declare_exchange(
        &mut c,
        ExchangeDeclare::new(&x, "direct").argument("alternate-exchange", ae.as_str()),
    );
    declare(&mut c, &q);
    declare(&mut c, &qae);
    bind(&mut c, QueueBind::new(&q, &x, "known"));
    bind(&mut c, QueueBind::new(&qae, &ae, ""));

    routed(&mut c, &x, "known", "routed");
    // Mandatory and still no NoRoute: the alternate exchange routed it.
    routed(&mut c, &x, "unknown", "to the alternate");
    assert_eq!(drain(&mut c, &q), ["routed"]);
    let p = c.basic_get_no_ack(&qae);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(&d.body[..], b"to the alternate");
    // It keeps its original exchange and key.
    assert_eq!(d.exchange(), x.as_str());
    assert_eq!(d.routing_key(), "unknown");
    assert!(drain(&mut c, &qae).is_empty());

    delete_exchange(&mut c, &x);
    delete_exchange(&mut c, &ae);
    assert_eq!(delete_queue(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &qae), 0);
    close(c);
}
