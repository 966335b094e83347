//! Consumers against a real broker: reject, nack, dead-lettering, settling
//! errors, cancels from either side, consumer tags, prefetch, recover and
//! exclusive consumers.

mod common;
mod support;

use puka::{Consume, Error, FieldValue, QueueDeclare};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use support::{
    assert_quiet, close, connect, declare, declare_with, delete_queue, message_count, next, publish,
};
use support::{Cleanup, W};

#[test]
fn reject_with_requeue_redelivers() {
    common::require_broker();
    let q = common::unique("reject-requeue");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"again");

    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"again");
    assert!(!d.redelivered);
    c.basic_reject(&d, puka::Requeue::Yes).expect("reject");
    // Settled: the same delivery can't be settled twice.
    assert!(matches!(
        c.basic_reject(&d, puka::Requeue::Yes),
        Err(Error::UnknownDeliveryTag(t)) if t == d.delivery_tag
    ));

    let d2 = next(&mut c, consumer);
    assert_eq!(&d2.body[..], b"again");
    assert!(d2.redelivered, "a requeued message is flagged redelivered");
    assert!(d2.delivery_tag > d.delivery_tag);
    c.basic_ack(&d2).expect("ack");
    assert_quiet(&mut c, consumer);

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn reject_without_requeue_drops() {
    common::require_broker();
    let q = common::unique("reject-drop");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"gone");

    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"gone");
    c.basic_reject(&d, puka::Requeue::No).expect("reject");
    // Not requeued: it never comes back.
    assert_quiet(&mut c, consumer);
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    let p = c.basic_get(&q);
    assert!(c.wait_timeout(p, W).expect("get").is_none());
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn rejected_message_is_dead_lettered_with_x_death() {
    common::require_broker();
    let src = common::unique("dlx-src");
    let dlq = common::unique("dlx-dlq");
    let _g = Cleanup::new().queue(&src).queue(&dlq);
    let mut c = connect();
    declare(&mut c, &dlq);
    declare_with(
        &mut c,
        QueueDeclare::named(&src)
            .argument("x-dead-letter-exchange", "")
            .argument("x-dead-letter-routing-key", dlq.as_str()),
    );
    publish(&mut c, &src, b"doomed");

    let p = c.basic_get(&src);
    let d = c.wait_timeout(p, W).expect("get").expect("the message");
    assert_eq!(&d.body[..], b"doomed");
    assert!(
        d.properties.headers().is_none(),
        "published without headers"
    );
    c.basic_reject(&d, puka::Requeue::No).expect("reject");

    let consumer = c.basic_consume(&dlq);
    let dead = next(&mut c, consumer);
    assert_eq!(&dead.body[..], b"doomed");
    // Dead-lettered through the default exchange with the configured key.
    assert_eq!(dead.exchange(), "");
    assert_eq!(dead.routing_key(), dlq.as_str());
    assert!(!dead.redelivered);
    let headers = dead.properties.headers().expect("x-death headers");
    let deaths = headers
        .get("x-death")
        .and_then(FieldValue::as_array)
        .expect("x-death is an array");
    assert_eq!(deaths.len(), 1);
    let death = deaths.iter().next().unwrap().as_table().expect("a table");
    assert_eq!(
        death.get("reason").and_then(FieldValue::as_str),
        Some("rejected")
    );
    assert_eq!(
        death.get("queue").and_then(FieldValue::as_str),
        Some(src.as_str())
    );
    // RabbitMQ sends the count as a signed 64-bit integer (`l`).
    assert_eq!(death.get("count"), Some(&FieldValue::I64(1)));
    assert_eq!(death.get("exchange").and_then(FieldValue::as_str), Some(""));
    let keys = death
        .get("routing-keys")
        .and_then(FieldValue::as_array)
        .expect("routing-keys array");
    assert_eq!(
        keys.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        vec![Some(src.as_str())]
    );
    assert!(matches!(death.get("time"), Some(FieldValue::Timestamp(_))));
    // The x-first-death-* summary headers.
    assert_eq!(
        headers
            .get("x-first-death-reason")
            .and_then(FieldValue::as_str),
        Some("rejected")
    );
    assert_eq!(
        headers
            .get("x-first-death-queue")
            .and_then(FieldValue::as_str),
        Some(src.as_str())
    );
    c.basic_ack(&dead).expect("ack");

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &src), 0);
    assert_eq!(delete_queue(&mut c, &dlq), 0);
    assert_eq!(delete_queue(&mut c, &src), 0);
    close(c);
}

#[test]
fn nack_with_requeue_redelivers() {
    common::require_broker();
    let q = common::unique("nack-requeue");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"n");

    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert!(!d.redelivered);
    c.basic_nack(&d, puka::Requeue::Yes).expect("nack");
    let d2 = next(&mut c, consumer);
    assert_eq!(&d2.body[..], b"n");
    assert!(d2.redelivered);
    c.basic_ack(&d2).expect("ack");

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn nack_multiple_settles_every_earlier_delivery() {
    common::require_broker();
    let q = common::unique("nack-multi");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..4 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }

    let consumer = c.basic_consume(&q);
    let got: Vec<_> = (0..4).map(|_| next(&mut c, consumer)).collect();
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.body_str(), Some(format!("m{i}").as_str()));
        assert!(!d.redelivered);
    }
    // Nack m0..=m2 in one go and requeue them; m3 stays unacked.
    c.basic_nack_multiple(&got[2], puka::Requeue::Yes)
        .expect("nack multiple");
    for d in &got[..3] {
        assert!(
            matches!(c.basic_ack(d), Err(Error::UnknownDeliveryTag(t)) if t == d.delivery_tag),
            "delivery {} was settled by the multiple nack",
            d.delivery_tag
        );
    }
    // The three come back, in order, flagged redelivered.
    for i in 0..3 {
        let d = next(&mut c, consumer);
        assert_eq!(d.body_str(), Some(format!("m{i}").as_str()));
        assert!(d.redelivered);
        c.basic_ack(&d).expect("ack redelivered");
    }
    assert_quiet(&mut c, consumer);
    c.basic_ack(&got[3]).expect("ack m3");

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn nack_multiple_without_requeue_drops_them_all() {
    common::require_broker();
    let q = common::unique("nack-multi-drop");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..3 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }
    let consumer = c.basic_consume(&q);
    let got: Vec<_> = (0..3).map(|_| next(&mut c, consumer)).collect();
    c.basic_nack_multiple(&got[2], puka::Requeue::No)
        .expect("nack multiple");
    assert_quiet(&mut c, consumer);
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn double_ack_is_refused_locally_and_the_channel_survives() {
    common::require_broker();
    let q = common::unique("double-ack");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"one");
    publish(&mut c, &q, b"two");

    let consumer = c.basic_consume(&q);
    let d1 = next(&mut c, consumer);
    let d2 = next(&mut c, consumer);
    assert_eq!(&d1.body[..], b"one");
    assert_eq!(&d2.body[..], b"two");
    c.basic_ack(&d1).expect("first ack");
    match c.basic_ack(&d1) {
        Err(Error::UnknownDeliveryTag(t)) => assert_eq!(t, d1.delivery_tag),
        other => panic!("second ack: expected UnknownDeliveryTag, got {other:?}"),
    }
    // Nor nack or reject of it.
    assert!(matches!(
        c.basic_nack(&d1, puka::Requeue::Yes),
        Err(Error::UnknownDeliveryTag(_))
    ));
    assert!(matches!(
        c.basic_reject(&d1, puka::Requeue::Yes),
        Err(Error::UnknownDeliveryTag(_))
    ));
    // Had the second ack gone out, RabbitMQ would have closed the channel
    // with 406 PRECONDITION_FAILED and ended the consumer with that error.
    // Instead the consumer goes on: a following ack works, and a new message
    // still arrives.
    c.basic_ack(&d2).expect("ack of the other delivery");
    publish(&mut c, &q, b"three");
    let d3 = next(&mut c, consumer);
    assert_eq!(&d3.body[..], b"three");
    c.basic_ack(&d3).expect("ack three");
    assert_quiet(&mut c, consumer);
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W)
        .expect("cancel: the channel is still open");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn ack_of_a_no_ack_delivery_is_refused_locally() {
    common::require_broker();
    let q = common::unique("noack-ack");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"auto");

    let consumer = c.basic_consume_with(Consume::queue(&q).no_ack());
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"auto");
    assert!(!d.needs_ack());
    assert!(matches!(
        c.basic_ack(&d),
        Err(Error::UnknownDeliveryTag(t)) if t == d.delivery_tag
    ));
    assert!(matches!(
        c.basic_reject(&d, puka::Requeue::No),
        Err(Error::UnknownDeliveryTag(_))
    ));
    // The consumer's channel is untouched: more messages arrive.
    publish(&mut c, &q, b"auto2");
    let d2 = next(&mut c, consumer);
    assert_eq!(&d2.body[..], b"auto2");
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");

    // And a manual-ack delivery on another channel of the same client
    // settles normally afterwards.
    publish(&mut c, &q, b"manual");
    let p = c.basic_get(&q);
    let g = c.wait_timeout(p, W).expect("get").expect("a message");
    assert_eq!(&g.body[..], b"manual");
    c.basic_ack(&g).expect("ack");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn client_cancel_ends_the_consumer() {
    common::require_broker();
    let q = common::unique("cancel");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume(&q);
    // The consumer is registered once a delivery comes through it.
    publish(&mut c, &q, b"before");
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"before");
    c.basic_ack(&d).expect("ack");
    assert_eq!(support::consumer_count(&mut c, &q), 1);

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("basic_cancel");
    assert_eq!(support::consumer_count(&mut c, &q), 0);

    publish(&mut c, &q, b"after");
    assert_eq!(message_count(&mut c, &q), 1, "nobody consumed it");
    // basic.cancel-ok ended the consumer: its last result is the end as a
    // value (`Ok(None)`), then the promise is spent.
    match c.wait_timeout(consumer, support::QUIET) {
        Ok(None) => {}
        other => panic!("expected Ok(None) from the cancelled consumer, got {other:?}"),
    }
    match c.wait_timeout(consumer, support::QUIET) {
        Err(Error::UnknownPromise) => {}
        other => panic!("expected UnknownPromise from the ended consumer, got {other:?}"),
    }
    // A second cancel of the same consumer names nothing.
    let p = c.basic_cancel(consumer);
    assert!(matches!(c.wait_timeout(p, W), Err(Error::UnknownPromise)));
    assert_eq!(message_count(&mut c, &q), 1);
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

/// The user's own close ends a consumer as a value: `Ok(None)` after the
/// deliveries already received, for `wait` and for a callback alike (it
/// used to be `Err(ConnectionClosed)`, which read as a failure).
#[test]
fn graceful_close_ends_consumers_with_a_value() {
    common::require_broker();
    let q = common::unique("close-ends");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let waited = c.basic_consume_with(Consume::queue(&q).prefetch(10));
    let q2 = common::unique("close-ends-cb");
    let _g2 = Cleanup::new().queue(&q2);
    declare(&mut c, &q2);
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let s = seen.clone();
    let called_back = c.basic_consume_then(Consume::queue(&q2).no_ack(), move |c, r| {
        s.borrow_mut().push(match r {
            Ok(Some(d)) => format!("delivery {}", d.body_str().unwrap_or("?")),
            Ok(None) => "end".to_string(),
            Err(e) => format!("error {e}"),
        });
        c.loop_break();
    });
    publish(&mut c, &q, b"one");
    publish(&mut c, &q, b"two");
    publish(&mut c, &q2, b"cb");
    c.run_loop(Some(W)).expect("run_loop");
    assert_eq!(*seen.borrow(), ["delivery cb"]);
    // Both deliveries on `waited` are received before the close.
    let one = next(&mut c, waited);
    assert_eq!(&one.body[..], b"one");
    c.basic_ack(&one).expect("ack");
    let deadline = std::time::Instant::now() + W;
    while c.stats().deliveries < 3 && std::time::Instant::now() < deadline {
        let _ = c.run_loop(Some(std::time::Duration::from_millis(10)));
    }

    let closed = c.close();
    c.wait_timeout(closed, W).expect("close");
    // What was received comes first, then the end, then nothing.
    let two = c.wait_timeout(waited, W).expect("the held delivery");
    assert_eq!(two.expect("a delivery before the end").body, &b"two"[..]);
    assert!(matches!(c.wait_timeout(waited, W), Ok(None)));
    assert!(matches!(
        c.wait_timeout(waited, W),
        Err(Error::UnknownPromise)
    ));
    // The callback saw the end as a value too, once.
    c.run_any_callbacks();
    assert_eq!(*seen.borrow(), ["delivery cb", "end"]);
    assert!(matches!(
        c.wait_timeout(called_back, W),
        Err(Error::UnknownPromise)
    ));
}

#[test]
fn server_cancel_on_queue_delete() {
    common::require_broker();
    let q = common::unique("server-cancel");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume(&q);
    publish(&mut c, &q, b"x");
    let d = next(&mut c, consumer);
    c.basic_ack(&d).expect("ack");

    let mut other = connect();
    assert_eq!(delete_queue(&mut other, &q), 0);
    close(other);

    match c.wait_timeout(consumer, W) {
        Err(Error::ConsumerCancelled { .. }) => {}
        other => panic!("expected ConsumerCancelled, got {other:?}"),
    }
    // That was its last result.
    assert!(matches!(
        c.wait_timeout(consumer, W),
        Err(Error::UnknownPromise)
    ));
    // The client is fine.
    assert!(c.is_open());
    let p = c.queue_declare(QueueDeclare::server_named());
    c.wait_timeout(p, W).expect("declare after the cancel");
    close(c);
}

#[test]
fn server_cancel_of_a_multi_queue_consumer() {
    common::require_broker();
    let qs: Vec<String> = (0..3)
        .map(|i| common::unique(&format!("multi{i}")))
        .collect();
    let _g = qs.iter().fold(Cleanup::new(), |g, q| g.queue(q));
    let mut c = connect();
    for q in &qs {
        declare(&mut c, q);
    }
    let names: Vec<&str> = qs.iter().map(String::as_str).collect();
    let consumer = c.basic_consume_multi(&names);
    // One message through each queue: all three consumers are registered.
    for q in &qs {
        publish(&mut c, q, q.as_bytes());
    }
    let mut seen: Vec<String> = (0..3)
        .map(|_| {
            let d = next(&mut c, consumer);
            assert_eq!(d.body_str(), Some(d.routing_key()));
            c.basic_ack(&d).expect("ack");
            d.routing_key().to_string()
        })
        .collect();
    seen.sort();
    let mut want = qs.clone();
    want.sort();
    assert_eq!(seen, want);

    let mut other = connect();
    // Deleting one queue ends the whole consumer, naming that queue; its
    // other queues are cancelled too (nothing goes on silently with part of
    // what was asked for).
    assert_eq!(delete_queue(&mut other, &qs[0]), 0);
    match c.wait_timeout(consumer, W) {
        Err(Error::ConsumerCancelled { queue, .. }) => assert_eq!(queue, qs[0]),
        other => panic!("expected ConsumerCancelled, got {other:?}"),
    }
    assert!(matches!(
        c.wait_timeout(consumer, W),
        Err(Error::UnknownPromise)
    ));
    for q in &qs[1..] {
        publish(&mut c, q, b"stays");
    }
    for q in &qs[1..] {
        assert_eq!(delete_queue(&mut other, q), 1, "{q}: nobody consumed it");
    }
    close(other);
    assert!(c.is_open());
    close(c);
}

#[test]
fn consumer_tag_is_used() {
    common::require_broker();
    let q = common::unique("ctag");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume_with(Consume::queue(&q).consumer_tag("my-tag"));
    publish(&mut c, &q, b"tagged");
    let d = next(&mut c, consumer);
    assert_eq!(d.consumer_tag(), "my-tag");
    c.basic_ack(&d).expect("ack");
    let listed = common::rabbitmqctl(&[
        "list_consumers",
        "--no-table-headers",
        "queue_name",
        "consumer_tag",
    ]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [q.as_str(), "my-tag"]),
        "consumer {q} my-tag not in rabbitmqctl list_consumers:\n{listed}"
    );
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn prefetch_limits_unacked_deliveries() {
    common::require_broker();
    let q = common::unique("qos");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..5 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }

    let a = c.basic_consume_with(Consume::queue(&q).prefetch(1));
    let a0 = next(&mut c, a);
    assert_eq!(a0.body_str(), Some("m0"));
    assert!(matches!(
        c.wait_timeout(a, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    c.basic_ack(&a0).expect("ack");
    let a1 = next(&mut c, a);
    assert_eq!(a1.body_str(), Some("m1"));
    // a1 stays unacked: A is full, so the next consumer gets the rest.

    let b = c.basic_consume_with(Consume::queue(&q).prefetch(2));
    let b0 = next(&mut c, b);
    let b1 = next(&mut c, b);
    assert_eq!(b0.body_str(), Some("m2"));
    assert_eq!(b1.body_str(), Some("m3"));
    assert!(matches!(
        c.wait_timeout(b, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        c.wait_timeout(a, Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    assert_eq!(message_count(&mut c, &q), 1, "m4 waits for a free slot");

    // Acking one of B's frees one slot: m4 goes to B.
    c.basic_ack(&b0).expect("ack b0");
    let b2 = next(&mut c, b);
    assert_eq!(b2.body_str(), Some("m4"));
    for d in [&a1, &b1, &b2] {
        c.basic_ack(d).expect("ack");
    }
    for p in [a, b] {
        let p = c.basic_cancel(p);
        c.wait_timeout(p, W).expect("cancel");
    }
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn basic_qos_does_not_change_a_running_consumer() {
    common::require_broker();
    let q = common::unique("qos-change");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..3 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }
    let a = c.basic_consume_with(Consume::queue(&q).prefetch(1));
    let d0 = next(&mut c, a);
    assert_eq!(d0.body_str(), Some("m0"));
    assert!(matches!(
        c.wait_timeout(a, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    // basic.qos is accepted, but RabbitMQ applies a per-consumer prefetch
    // (global = false) only to consumers started on the channel afterwards:
    // the running consumer keeps its window of 1.
    let p = c.basic_qos(a, puka::Qos::prefetch(3));
    c.wait_timeout(p, W).expect("basic_qos");
    assert!(matches!(
        c.wait_timeout(a, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    c.basic_ack(&d0).expect("ack");
    let d1 = next(&mut c, a);
    assert_eq!(d1.body_str(), Some("m1"));
    assert!(matches!(
        c.wait_timeout(a, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    c.basic_ack(&d1).expect("ack");
    let d2 = next(&mut c, a);
    assert_eq!(d2.body_str(), Some("m2"));
    c.basic_ack(&d2).expect("ack");
    let p = c.basic_cancel(a);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn ack_multiple_settles_every_earlier_delivery() {
    common::require_broker();
    let q = common::unique("ack-multi");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..3 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }
    let a = c.basic_consume(&q);
    let got: Vec<_> = (0..3).map(|_| next(&mut c, a)).collect();
    c.basic_ack_multiple(&got[1]).expect("ack multiple");
    for d in &got[..2] {
        assert!(matches!(
            c.basic_ack(d),
            Err(Error::UnknownDeliveryTag(t)) if t == d.delivery_tag
        ));
    }
    c.basic_ack(&got[2]).expect("ack the last");
    assert_quiet(&mut c, a);
    let p = c.basic_cancel(a);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn basic_recover_requeue_redelivers_unacked() {
    common::require_broker();
    let q = common::unique("recover");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"r0");
    publish(&mut c, &q, b"r1");

    let consumer = c.basic_consume(&q);
    let old: Vec<_> = (0..2).map(|_| next(&mut c, consumer)).collect();
    assert!(old.iter().all(|d| !d.redelivered));
    let p = c.basic_recover(consumer, puka::Requeue::Yes);
    c.wait_timeout(p, W).expect("basic_recover");
    // The old deliveries are void now (the broker forgot their tags).
    for d in &old {
        assert!(matches!(
            c.basic_ack(d),
            Err(Error::UnknownDeliveryTag(t)) if t == d.delivery_tag
        ));
    }
    let mut again: Vec<_> = (0..2).map(|_| next(&mut c, consumer)).collect();
    again.sort_by_key(|d| d.body.clone());
    for (i, d) in again.iter().enumerate() {
        assert_eq!(d.body_str(), Some(format!("r{i}").as_str()));
        assert!(d.redelivered);
        assert!(d.delivery_tag > old[1].delivery_tag);
        c.basic_ack(d).expect("ack");
    }
    assert_quiet(&mut c, consumer);
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn exclusive_consumer_conflict() {
    common::require_broker();
    let q = common::unique("excl-consumer");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let first = c.basic_consume_with(Consume::queue(&q).exclusive());
    publish(&mut c, &q, b"e0");
    let d = next(&mut c, first);
    assert_eq!(&d.body[..], b"e0");
    c.basic_ack(&d).expect("ack");

    // From another connection, and from the same one.
    let mut other = connect();
    let second = other.basic_consume(&q);
    match other.wait_timeout(second, W) {
        Err(Error::AccessRefused(r)) => {
            assert_eq!(r.code, 403);
            assert!(r.text.starts_with("ACCESS_REFUSED"), "{r}");
            assert!(
                !r.connection,
                "an exclusive consumer's refusal closes a channel"
            );
        }
        res => panic!("expected AccessRefused, got {res:?}"),
    }
    assert!(other.is_open(), "only the consumer's channel closed");
    close(other);
    let third = c.basic_consume(&q);
    assert!(matches!(
        c.wait_timeout(third, W),
        Err(Error::AccessRefused(_))
    ));
    assert!(matches!(
        c.wait_timeout(third, W),
        Err(Error::UnknownPromise)
    ));

    // The first consumer keeps working.
    publish(&mut c, &q, b"e1");
    let d = next(&mut c, first);
    assert_eq!(&d.body[..], b"e1");
    c.basic_ack(&d).expect("ack");
    assert_eq!(support::consumer_count(&mut c, &q), 1);
    let p = c.basic_cancel(first);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

/// Many RPCs over direct reply-to on one connection. RabbitMQ gives every
/// reply on `amq.rabbitmq.reply-to` the channel's next delivery tag without
/// advancing it, so the replies repeat one tag: the second reply used to
/// close the connection ("delivery tag 1 on channel 1 does not follow 1").
#[test]
fn direct_reply_to_carries_many_replies_on_one_connection() {
    common::require_broker();
    let q = common::unique("rpc-direct");
    let _g = Cleanup::new().queue(&q);
    let mut server = connect();
    declare(&mut server, &q);
    let requests = server.basic_consume_with(Consume::queue(&q).no_ack());
    let mut client = connect();
    let replies = client.basic_consume_with(Consume::queue("amq.rabbitmq.reply-to").no_ack());
    let mut tags = Vec::new();
    for i in 0..5 {
        let id = format!("req-{i}");
        let props = puka::BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to")
            .with_correlation_id(id.as_str());
        let _ = client.basic_publish_with("", &q, id.as_bytes(), &props, puka::Unroutable::Drop);
        client.flush(W).expect("flush request");
        let req = server
            .wait_timeout(requests, W)
            .expect("request")
            .expect("request consumer ended");
        let reply_to = req.properties.reply_to().expect("reply_to").to_string();
        assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");
        let answer = puka::BasicProperties::default().with_correlation_id(id.as_str());
        let _ =
            server.basic_publish_with("", &reply_to, &req.body, &answer, puka::Unroutable::Drop);
        server.flush(W).expect("flush reply");
        let reply = client
            .wait_timeout(replies, W)
            .expect("reply")
            .expect("reply consumer ended");
        assert_eq!(reply.properties.correlation_id(), Some(id.as_str()));
        assert_eq!(&reply.body[..], id.as_bytes());
        assert!(!reply.needs_ack());
        tags.push(reply.delivery_tag);
    }
    assert!(client.is_open(), "{:?}", client.next_connection_event());
    eprintln!("direct reply-to delivery tags: {tags:?}");
    close(client);
    close(server);
}
