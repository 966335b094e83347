//! Message properties and headers through a real broker: every property and
//! every field type must come back exactly as sent.
//!
//! What RabbitMQ 3.10 does to them, found by experiment:
//! - A message it only routes and stores (classic queue, consumer or
//!   basic.get) keeps its content header byte for byte: every field type
//!   comes back as the same variant and value (no widening or narrowing of
//!   integers, `x` stays a byte array, `V` stays void), and the header keys
//!   keep the order they were sent in.
//! - A message it rewrites (dead-lettering adds `x-death`) gets its headers
//!   table re-encoded: the values and types still don't change, but the
//!   top-level keys come back sorted; nested tables keep their order. It
//!   also drops `expiration` (kept as `original-expiration` in `x-death`).
//! - `user_id` is checked against the connection's user (406 otherwise).

mod common;
mod support;

use bytes::Bytes;
use puka::codec::Decimal;
use puka::{
    BasicProperties, Error, FieldArray, FieldTable, FieldValue, QueueDeclare, ShortString,
    Timestamp,
};
use support::{close, connect, declare, declare_with, delete_queue, next};
use support::{Cleanup, W};

/// A table with a value of every field type, keys deliberately not sorted.
fn every_field_type() -> FieldTable {
    let nested = FieldTable::new()
        .with("zz-int", 7i32)
        .with("aa-str", "inner")
        .with("mm-deeper", FieldTable::new().with("x", -1i8));
    let array = FieldArray::from(vec![
        FieldValue::from(1u8),
        FieldValue::from("two"),
        FieldValue::from(-3i64),
        FieldValue::from(300u16),
        FieldValue::Void,
        FieldValue::from(FieldTable::new().with("in-array", true)),
        FieldValue::from(vec![FieldValue::from(2.5f64)]),
    ]);
    FieldTable::new()
        .with("t-bool-true", true)
        .with("t-bool-false", false)
        .with("b-i8", i8::MIN)
        .with("B-u8", u8::MAX)
        .with("s-i16", i16::MIN)
        .with("u-u16", u16::MAX)
        .with("I-i32", i32::MIN)
        .with("i-u32", u32::MAX)
        .with("l-i64", i64::MIN)
        .with("f-f32", 1.5f32)
        .with("d-f64", -2.25e300f64)
        .with("D-decimal", Decimal::new(2, 1999))
        .with("S-long-string", "hello ünïcödé")
        .with(
            "S-long-string-not-utf8",
            FieldValue::LongString(Bytes::from_static(b"\xff\x00\xfe")),
        )
        .with("S-empty", "")
        .with("A-array", array)
        .with("A-empty", FieldArray::new())
        .with("T-timestamp", Timestamp(1_700_000_000))
        .with("F-table", nested)
        .with("F-empty", FieldTable::new())
        .with("V-void", FieldValue::Void)
        .with(
            "x-byte-array",
            FieldValue::ByteArray(Bytes::from_static(b"\x00\x01\xff")),
        )
}

/// Every one of the 14 properties set.
fn all_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/octet-stream")
        .with_content_encoding("identity")
        .with_headers(every_field_type())
        .with_delivery_mode(BasicProperties::DELIVERY_MODE_PERSISTENT)
        .with_priority(7)
        .with_correlation_id("corr-42")
        .with_reply_to("amq.rabbitmq.reply-to.nobody")
        .with_expiration("600000")
        .with_message_id("msg-0001")
        .with_timestamp(Timestamp(1_234_567_890))
        .with_kind("test.event")
        // RabbitMQ checks user_id against the authenticated user.
        .with_user_id("guest")
        .with_app_id("puka-tests")
        .with_cluster_id("cluster-x")
}

fn assert_all_getters(p: &BasicProperties) {
    assert_eq!(p.content_type(), Some("application/octet-stream"));
    assert_eq!(p.content_encoding(), Some("identity"));
    assert_eq!(p.headers(), Some(&every_field_type()));
    assert_eq!(p.delivery_mode(), Some(2));
    assert_eq!(p.priority(), Some(7));
    assert_eq!(p.correlation_id(), Some("corr-42"));
    assert_eq!(p.reply_to(), Some("amq.rabbitmq.reply-to.nobody"));
    assert_eq!(p.expiration(), Some("600000"));
    assert_eq!(p.message_id(), Some("msg-0001"));
    assert_eq!(p.timestamp(), Some(Timestamp(1_234_567_890)));
    assert_eq!(p.kind(), Some("test.event"));
    assert_eq!(p.user_id(), Some("guest"));
    assert_eq!(p.app_id(), Some("puka-tests"));
    assert_eq!(p.cluster_id(), Some("cluster-x"));
}

fn keys(t: &FieldTable) -> Vec<String> {
    t.iter().map(|(k, _)| k.to_string()).collect()
}

#[test]
fn every_property_and_field_type_round_trips() {
    common::require_broker();
    let q = common::unique("props");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let props = all_properties();
    for body in [&b"via get"[..], &b"via consume"[..]] {
        let p = c.basic_publish_with("", &q, body, &props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }

    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(&d.body[..], b"via get");
    assert_eq!(d.properties, props);
    assert_all_getters(&d.properties);
    // Same order as sent, not sorted.
    assert_eq!(
        keys(d.properties.headers().unwrap()),
        keys(&every_field_type())
    );
    c.basic_ack(&d).expect("ack");

    let consumer = c.basic_consume(&q);
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"via consume");
    assert_eq!(d.properties, props);
    assert_all_getters(&d.properties);
    c.basic_ack(&d).expect("ack");
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn each_field_type_alone_keeps_its_type() {
    common::require_broker();
    let q = common::unique("field-types");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let all = every_field_type();
    for (k, v) in all.iter() {
        let props = BasicProperties::default().with_header(k.clone(), v.clone());
        let p = c.basic_publish_with("", &q, k.as_bytes(), &props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }
    for (k, v) in all.iter() {
        let p = c.basic_get(&q);
        let d = c.wait_timeout(p, W).expect("get").expect("message");
        assert_eq!(&d.body[..], k.as_bytes());
        let h = d.properties.headers().expect("headers");
        assert_eq!(h.len(), 1);
        let got = h.get(k.as_str()).expect("the header");
        assert_eq!(got, v, "header {k}");
        assert_eq!(got.tag(), v.tag(), "type tag of {k}");
        c.basic_ack(&d).expect("ack");
    }
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn no_properties_and_empty_headers_stay_distinct() {
    common::require_broker();
    let q = common::unique("empty-props");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let none = BasicProperties::default();
    let empty_headers = BasicProperties::default().with_headers(FieldTable::new());
    for props in [&none, &empty_headers] {
        let p = c.basic_publish_with("", &q, b"", props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(d.properties, none);
    assert!(d.properties.headers().is_none());
    assert!(d.body.is_empty());
    c.basic_ack(&d).expect("ack");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(d.properties, empty_headers);
    assert_eq!(d.properties.headers(), Some(&FieldTable::new()));
    c.basic_ack(&d).expect("ack");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn longest_short_strings_round_trip_and_longer_ones_are_refused() {
    common::require_broker();
    let q = common::unique("shortstr");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let max = "m".repeat(255);
    let props = BasicProperties::default()
        .with_message_id(max.as_str())
        .with_header(ShortString::from(max.as_str()), max.as_str());
    let p = c.basic_publish_with("", &q, b"255", &props, puka::Unroutable::Drop);
    c.wait_timeout(p, W).expect("publish");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(d.properties, props);
    assert_eq!(d.properties.message_id(), Some(max.as_str()));
    c.basic_ack(&d).expect("ack");

    // 256 bytes can't be a shortstr: refused before anything is sent.
    let too_long = "m".repeat(256);
    let props = BasicProperties::default().with_message_id(too_long.as_str());
    let p = c.basic_publish_with("", &q, b"256", &props, puka::Unroutable::Drop);
    match c.wait_timeout(p, W) {
        Err(Error::InvalidArgument(e)) => assert!(e.to_string().contains("256"), "{e}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let props = BasicProperties::default().with_header(ShortString::from(too_long.as_str()), 1u8);
    let p = c.basic_publish_with("", &q, b"256", &props, puka::Unroutable::Drop);
    assert!(matches!(
        c.wait_timeout(p, W),
        Err(Error::InvalidArgument(_))
    ));
    // The connection and the publish channel are untouched.
    assert!(c.is_open());
    support::publish(&mut c, &q, b"after");
    assert_eq!(support::message_count(&mut c, &q), 1);
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

#[test]
fn user_id_must_match_the_connection_user() {
    common::require_broker();
    let q = common::unique("user-id");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let props = BasicProperties::default().with_user_id("mallory");
    let p = c.basic_publish_with("", &q, b"forged", &props, puka::Unroutable::Drop);
    let err = c.wait_timeout(p, W).expect_err("forged user_id");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    let text = &err.reply().unwrap().text;
    assert!(
        text.starts_with("PRECONDITION_FAILED") && text.contains("mallory"),
        "{text}"
    );
    // The publish channel is replaced; the right user_id goes through.
    let props = BasicProperties::default().with_user_id("guest");
    let p = c.basic_publish_with("", &q, b"honest", &props, puka::Unroutable::Drop);
    c.wait_timeout(p, W).expect("publish");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(&d.body[..], b"honest");
    assert_eq!(d.properties.user_id(), Some("guest"));
    c.basic_ack(&d).expect("ack");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn dead_lettering_reencodes_headers_sorted_with_the_same_values() {
    common::require_broker();
    let src = common::unique("props-dlx-src");
    let dlq = common::unique("props-dlx-dlq");
    let _g = Cleanup::new().queue(&src).queue(&dlq);
    let mut c = connect();
    declare(&mut c, &dlq);
    declare_with(
        &mut c,
        QueueDeclare::named(&src)
            .argument("x-dead-letter-exchange", "")
            .argument("x-dead-letter-routing-key", dlq.as_str()),
    );
    let props = all_properties();
    let p = c.basic_publish_with("", &src, b"dead", &props, puka::Unroutable::Drop);
    c.wait_timeout(p, W).expect("publish");
    let p = c.basic_get(&src);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    c.basic_reject(&d, puka::Requeue::No).expect("reject");

    let consumer = c.basic_consume(&dlq);
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"dead");
    let got = d.properties.headers().expect("headers");
    let sent = every_field_type();
    // Every header sent is there with the same type and value...
    for (k, v) in sent.iter() {
        assert_eq!(got.get(k.as_str()), Some(v), "header {k}");
    }
    // ...plus the four RabbitMQ adds...
    let mut added: Vec<String> = keys(got)
        .into_iter()
        .filter(|k| !sent.contains_key(k))
        .collect();
    added.sort();
    assert_eq!(
        added,
        [
            "x-death",
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason"
        ]
    );
    // ...and the top-level keys are now sorted (byte order), while the
    // nested table keeps the order it was sent in.
    let mut sorted = keys(got);
    sorted.sort();
    assert_eq!(keys(got), sorted);
    assert_eq!(
        keys(got.get("F-table").unwrap().as_table().unwrap()),
        ["zz-int", "aa-str", "mm-deeper"]
    );
    // Dead-lettering drops the per-message TTL (so the copy doesn't expire
    // in the dead-letter queue) and records it in x-death instead.
    assert_eq!(d.properties.expiration(), None);
    let death = got
        .get("x-death")
        .and_then(FieldValue::as_array)
        .and_then(|a| a.iter().next())
        .and_then(FieldValue::as_table)
        .expect("x-death[0]");
    assert_eq!(
        death.get("original-expiration"),
        Some(&FieldValue::from("600000"))
    );
    // The other 12 properties are untouched.
    let comparable = |p: &BasicProperties| {
        p.clone()
            .with_headers(FieldTable::new())
            .with_expiration("")
    };
    assert_eq!(comparable(&d.properties), comparable(&props));
    c.basic_ack(&d).expect("ack");
    let p = c.basic_cancel(consumer);
    c.wait_timeout(p, W).expect("cancel");
    assert_eq!(delete_queue(&mut c, &dlq), 0);
    assert_eq!(delete_queue(&mut c, &src), 0);
    close(c);
}

#[test]
fn higher_priority_is_delivered_first() {
    common::require_broker();
    let q = common::unique("priority");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare_with(
        &mut c,
        QueueDeclare::named(&q).argument("x-max-priority", 10u8),
    );
    // Queued before anyone consumes, lowest first.
    for (body, prio) in [("low", 1u8), ("none", 0), ("high", 9), ("mid", 5)] {
        let props = if prio == 0 {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_priority(prio)
        };
        let p = c.basic_publish_with("", &q, body.as_bytes(), &props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let p = c.basic_get(&q);
        let d = c.wait_timeout(p, W).expect("get").expect("message");
        order.push((d.body_str().unwrap().to_string(), d.properties.priority()));
        c.basic_ack(&d).expect("ack");
    }
    assert_eq!(
        order,
        [
            ("high".to_string(), Some(9)),
            ("mid".to_string(), Some(5)),
            ("low".to_string(), Some(1)),
            ("none".to_string(), None),
        ]
    );
    // A priority above x-max-priority counts as the maximum: the two are at
    // the same level, so they come out in publish order.
    for (body, prio) in [("at-max", 10u8), ("above-max", 200)] {
        let props = BasicProperties::default().with_priority(prio);
        let p = c.basic_publish_with("", &q, body.as_bytes(), &props, puka::Unroutable::Drop);
        c.wait_timeout(p, W).expect("publish");
    }
    for (body, prio) in [("at-max", 10u8), ("above-max", 200)] {
        let p = c.basic_get(&q);
        let d = c.wait_timeout(p, W).expect("get").expect("message");
        assert_eq!(d.body_str(), Some(body));
        // The property itself comes back unchanged.
        assert_eq!(d.properties.priority(), Some(prio));
        c.basic_ack(&d).expect("ack");
    }
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}
