//! Publishing and receiving against a real broker: the round trips of Python
//! puka's test_basic, made stricter.

mod common;
mod support;

use puka::{BasicProperties, Consume, Delivery, Error, Options, Promise, QueueDeclare};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use support::{close, connect, connect_url, declare, delete_queue, message_count, next, publish};
use support::{Cleanup, W};

#[test]
fn roundtrip_sync_style() {
    common::require_broker();
    let q = common::unique("rt-sync");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();

    let ok = declare(&mut c, &q);
    assert_eq!(ok.queue, q.as_str());
    assert_eq!((ok.message_count, ok.consumer_count), (0, 0));

    publish(&mut c, &q, b"Hello world!");

    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"Hello world!");
    assert_eq!(d.routing_key(), q.as_str());
    assert_eq!(d.exchange(), "");
    assert!(!d.redelivered);
    assert!(d.needs_ack());
    assert_eq!(d.message_count, None);
    assert!(!d.consumer_tag().is_empty());
    c.basic_ack(&d).expect("ack");

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn roundtrip_callback_style() {
    common::require_broker();
    let q = common::unique("rt-callback");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();

    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let consumer: Rc<Cell<Option<Promise<Delivery>>>> = Rc::default();
    {
        let (log, consumer, q) = (log.clone(), consumer.clone(), q.clone());
        c.queue_declare_then(QueueDeclare::named(&q), move |c, r| {
            let ok = r.expect("queue_declare");
            log.borrow_mut().push(format!("declared {}", ok.queue));
            let (log, consumer, q2) = (log.clone(), consumer.clone(), q.clone());
            c.basic_publish_then("", &q, b"callback body", move |c, r| {
                r.expect("publish");
                log.borrow_mut().push("published".into());
                let log = log.clone();
                let p = c.basic_consume_then(Consume::queue(&q2), move |c, d| {
                    let Some(d) = d.expect("delivery") else {
                        log.borrow_mut().push("ended".into());
                        return;
                    };
                    log.borrow_mut().push(format!(
                        "got {} via {}",
                        d.body_str().unwrap(),
                        d.routing_key()
                    ));
                    c.basic_ack(&d).expect("ack");
                    c.loop_break();
                });
                consumer.set(Some(p));
            });
        });
    }
    c.run_loop(Some(W)).expect("run_loop");
    assert_eq!(
        *log.borrow(),
        vec![
            format!("declared {q}"),
            "published".to_string(),
            format!("got callback body via {q}"),
        ]
    );

    let p = c.basic_cancel(consumer.get().expect("consumer started"));
    c.wait_timeout(p, W).expect("cancel");
    // The cancel reaches the callback as the consumer's end, a value.
    c.run_any_callbacks();
    assert_eq!(log.borrow().last().map(String::as_str), Some("ended"));
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn client_properties_seen_by_broker() {
    common::require_broker();
    let name = common::unique("puka-conn-name");
    let c = support::connect_with(Options::default().connection_name(&name));
    let listed = common::rabbitmqctl(&[
        "list_connections",
        "--no-table-headers",
        "client_properties",
    ]);
    assert!(
        listed.contains(&name),
        "connection_name {name:?} not in rabbitmqctl list_connections:\n{listed}"
    );
    // Our product name is sent too.
    assert!(listed.contains("puka (rust)"), "{listed}");
    close(c);
}

#[test]
fn purge_returns_count() {
    common::require_broker();
    let q = common::unique("purge");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    assert!(c.confirms_enabled());
    declare(&mut c, &q);
    for i in 0..3 {
        publish(&mut c, &q, format!("m{i}").as_bytes());
    }
    let p = c.queue_purge(&q);
    assert_eq!(c.wait_timeout(p, W).expect("purge"), 3);
    let p = c.queue_purge(&q);
    assert_eq!(c.wait_timeout(p, W).expect("second purge"), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn basic_get_in_order_then_empty() {
    common::require_broker();
    let q = common::unique("get");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..4 {
        publish(&mut c, &q, format!("msg-{i}").as_bytes());
    }
    let mut got = Vec::new();
    let held = c.promise_count();
    for i in 0..4u32 {
        let p = c.basic_get(&q);
        let d = c
            .wait_timeout(p, W)
            .expect("basic_get")
            .unwrap_or_else(|| panic!("get #{i} returned None"));
        assert_eq!(d.body_str(), Some(format!("msg-{i}").as_str()));
        assert_eq!(d.message_count, Some(3 - i));
        assert_eq!(d.routing_key(), q.as_str());
        assert!(!d.redelivered);
        assert!(d.needs_ack());
        assert!(d.consumer_tag().is_empty());
        got.push(d);
    }
    let p = c.basic_get(&q);
    assert!(c.wait_timeout(p, W).expect("fifth get").is_none());
    // A get's result taken by `wait` spends its promise.
    assert_eq!(
        c.promise_count(),
        held,
        "promises left behind by waited gets"
    );
    for d in &got {
        c.basic_ack(d).expect("ack");
    }
    // Acked, not requeued: the queue stays empty.
    let p = c.basic_get(&q);
    assert!(c.wait_timeout(p, W).expect("get after acks").is_none());
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn basic_get_no_ack() {
    common::require_broker();
    let q = common::unique("get-noack");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"x");
    let p = c.basic_get_no_ack(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("a message");
    assert_eq!(&d.body[..], b"x");
    assert!(!d.needs_ack());
    assert!(matches!(c.basic_ack(&d), Err(Error::UnknownDeliveryTag(_))));
    assert_eq!(message_count(&mut c, &q), 0);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn delivery_modes_round_trip() {
    common::require_broker();
    let q = common::unique("dmode");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let persistent = BasicProperties::default().persistent();
    let transient =
        BasicProperties::default().with_delivery_mode(BasicProperties::DELIVERY_MODE_TRANSIENT);
    for (body, props) in [(&b"p"[..], &persistent), (&b"t"[..], &transient)] {
        let p = c.basic_publish_with("", &q, body, props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }
    let p = c.basic_publish("", &q, b"none");
    c.wait_timeout(p, W).expect("publish");

    let consumer = c.basic_consume_with(Consume::queue(&q).no_ack());
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"p");
    assert_eq!(d.properties.delivery_mode(), Some(2));
    assert!(d.properties.is_persistent());
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"t");
    assert_eq!(d.properties.delivery_mode(), Some(1));
    assert!(!d.properties.is_persistent());
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"none");
    assert_eq!(d.properties, BasicProperties::default());
    assert!(!d.needs_ack());

    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn hundred_parallel_queue_declares() {
    common::require_broker();
    let mut c = connect();
    let promises: Vec<_> = (0..100)
        .map(|_| c.queue_declare(QueueDeclare::server_named()))
        .collect();
    let ids: Vec<_> = promises.iter().map(|p| p.id()).collect();
    {
        let _w = common::watchdog("wait_for_all(100 queue declares)", Duration::from_secs(60));
        c.wait_for_all(&ids).expect("wait_for_all");
    }
    let mut names = Vec::new();
    for p in promises {
        // Every result is there already: this must not block.
        let ok = c
            .wait_timeout(p, Duration::from_millis(1))
            .expect("declare result");
        assert_eq!((ok.message_count, ok.consumer_count), (0, 0));
        assert!(ok.queue.starts_with("amq.gen-"), "{:?}", ok.queue);
        names.push(ok.queue.to_string());
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 100, "server-chosen names must be distinct");

    let deletes: Vec<_> = names
        .iter()
        .map(|q| c.queue_delete(puka::QueueDelete::new(q)))
        .collect();
    let ids: Vec<_> = deletes.iter().map(|p| p.id()).collect();
    {
        let _w = common::watchdog("wait_for_all(100 queue deletes)", Duration::from_secs(60));
        c.wait_for_all(&ids).expect("wait_for_all");
    }
    for p in deletes {
        assert_eq!(
            c.wait_timeout(p, Duration::from_millis(1)).expect("delete"),
            0
        );
    }
    // They are gone.
    let p = c.queue_declare(QueueDeclare::named(&names[0]).passive());
    assert!(matches!(c.wait_timeout(p, W), Err(Error::NotFound(_))));
    close(c);
}

#[test]
fn heartbeat_keeps_idle_connection_alive() {
    common::require_broker();
    let url = common::amqp_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    // 2 s, not 1: each side gives up after two silent intervals, and on a
    // loaded 2-core machine (this suite runs in parallel with the broker)
    // a 2 s silence from RabbitMQ did happen.
    let mut c = connect_url(&format!("{url}{sep}heartbeat=2"), Options::default());
    assert_eq!(c.tuned().heartbeat, 2);
    // Idle for several heartbeat intervals: RabbitMQ closes a connection it
    // hears nothing from for two intervals, and we must see its heartbeats.
    c.run_loop(Some(Duration::from_secs(6))).expect("run_loop");
    assert!(
        c.is_open(),
        "connection died while idle: {:?}",
        c.next_connection_event()
    );
    assert!(c.next_connection_event().is_none());
    let p = c.queue_declare(QueueDeclare::server_named());
    let ok = c.wait_timeout(p, W).expect("declare after idle");
    assert!(ok.queue.starts_with("amq.gen-"));
    // Idle again, this time inside wait_timeout on a promise that never
    // resolves (a consumer on the empty queue).
    let consumer = c.basic_consume(&ok.queue);
    assert!(matches!(
        c.wait_timeout(consumer, Duration::from_secs(4)),
        Err(Error::Timeout)
    ));
    assert!(c.is_open());
    assert_eq!(delete_queue(&mut c, &ok.queue), 0);
    close(c);
}

#[test]
fn unacked_messages_return_to_queue_on_close() {
    common::require_broker();
    let q = common::unique("unacked-close");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    for i in 0..3 {
        publish(&mut c, &q, format!("u{i}").as_bytes());
    }
    let consumer = c.basic_consume(&q);
    for i in 0..3 {
        let d = next(&mut c, consumer);
        assert_eq!(d.body_str(), Some(format!("u{i}").as_str()));
        assert!(!d.redelivered);
    }
    assert_eq!(message_count(&mut c, &q), 0, "all three are unacked");
    close(c);

    let mut c = connect();
    // The broker requeues when it tears the channels down; that may finish
    // a moment after close-ok, so look a few times (bounded).
    let mut count = message_count(&mut c, &q);
    for _ in 0..50 {
        if count == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        count = message_count(&mut c, &q);
    }
    assert_eq!(count, 3);
    let consumer = c.basic_consume(&q);
    for i in 0..3 {
        let d = next(&mut c, consumer);
        assert_eq!(d.body_str(), Some(format!("u{i}").as_str()));
        assert!(
            d.redelivered,
            "requeued message must be flagged redelivered"
        );
        c.basic_ack(&d).expect("ack");
    }
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

/// Deterministic pseudo-random bytes (xorshift64*), so no extra dependency.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn ten_mib_message_round_trips() {
    common::require_broker();
    let q = common::unique("big");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    let frame_max = c.tuned().frame_max as usize;
    let body = random_bytes(10 << 20, 0x9E37_79B9_7F4A_7C15);
    assert!(body.len() > 50 * frame_max, "the body spans many frames");
    declare(&mut c, &q);

    publish(&mut c, &q, &body);
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("the message");
    assert_eq!(d.body.len(), body.len());
    assert!(d.body[..] == body[..], "body differs");
    c.basic_ack(&d).expect("ack");

    // And through a consumer.
    publish(&mut c, &q, &body);
    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert_eq!(d.body.len(), body.len());
    assert!(d.body[..] == body[..], "body differs");
    c.basic_ack(&d).expect("ack");
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");

    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn wait_for_any_returns_the_resolved_promise() {
    common::require_broker();
    let q = common::unique("any");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume(&q);
    let p = c.basic_publish("", &q, b"any");
    let got = {
        let _w = common::watchdog("wait_for_any", Duration::from_secs(60));
        c.wait_for_any(&[consumer.id(), p.id()])
            .expect("wait_for_any")
    };
    assert!(got == consumer.id() || got == p.id());
    c.wait_timeout(p, W).expect("publish");
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"any");
    c.basic_ack(&d).unwrap();
    // A publish promise keeps no slot: once resolved, it reads as resolved
    // (the same result again), never as another operation's result.
    assert!(c.wait_timeout(p, W).is_ok());
    // Any other spent promise is unknown afterwards.
    let purge = c.queue_purge(&q);
    assert_eq!(c.wait_timeout(purge, W).expect("purge"), 0);
    assert!(matches!(
        c.wait_timeout(purge, W),
        Err(Error::UnknownPromise)
    ));
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

/// With confirms off a publish resolves once written: `wait` must see that
/// at once, not sleep until its timeout (no reply will ever wake it).
/// Regression: `wait`'s own turns left the resolution queued and slept.
#[test]
fn unconfirmed_publishes_resolve_without_sleeping() {
    common::require_broker();
    let q = common::unique("basic-unconfirmed");
    let _g = Cleanup::new().queue(&q);
    let mut c = support::connect_with(Options::default().confirms(puka::Confirms::Off));
    declare(&mut c, &q);
    let start = std::time::Instant::now();
    for i in 0..6 {
        let p = c.basic_publish("", &q, format!("m{i}").as_bytes());
        c.wait_timeout(p, Duration::from_secs(5)).expect("publish");
    }
    // Before the fix a publish after the first slept out the 5 s timeout.
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "6 unconfirmed publishes took {:?}",
        start.elapsed()
    );
    // They all arrived (publishes and the count go on different channels,
    // so the count may lag for a moment).
    let deadline = std::time::Instant::now() + W;
    while message_count(&mut c, &q) < 6 {
        assert!(std::time::Instant::now() < deadline, "publishes missing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(message_count(&mut c, &q), 6);
    close(c);
}
