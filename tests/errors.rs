//! Errors from a real broker, each mapped to its typed variant, and what
//! keeps working afterwards.

mod common;
mod support;

use puka::{
    BasicProperties, Client, Confirms, ConnectionEvent, Error, ExchangeDeclare, Options,
    QueueDeclare,
};
use std::io;
use std::time::Duration;
use support::{close, connect, connect_with, declare, declare_with, delete_queue, message_count};
use support::{Cleanup, W};

/// Asserts `r` is a broker error of `code` whose text starts with `prefix`.
fn assert_reply(err: &Error, code: u16, prefix: &str) {
    let reply = err
        .reply()
        .unwrap_or_else(|| panic!("{err:?} carries no reply"));
    assert_eq!(reply.code, code, "{err}");
    assert!(
        reply.text.starts_with(prefix),
        "reply text {:?} should start with {prefix:?}",
        reply.text
    );
}

/// The URL of the test broker with `vhost` (already percent-encoded) and
/// `password` in place of its own.
fn url_with(password: Option<&str>, vhost: Option<&str>) -> String {
    let url = common::amqp_url();
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u.to_string(), h),
        None => ("guest:guest".to_string(), authority),
    };
    let user = userinfo.split(':').next().unwrap_or("guest");
    let userinfo = match password {
        Some(p) => format!("{user}:{p}"),
        None => userinfo,
    };
    let tail = match vhost {
        Some(v) => format!("/{v}"),
        None => tail.to_string(),
    };
    format!("{scheme}://{userinfo}@{hostport}{tail}")
}

/// A client whose connect promise must fail; returns the client and error.
fn failed_connect(url: &str, options: Options) -> (Client, Error) {
    common::require_broker();
    let mut c = Client::with_options(url, options).expect("Client::with_options");
    let p = c.handshake();
    let err = c.wait_timeout(p, W).expect_err("connect must fail");
    assert!(!c.is_open());
    assert!(c.is_closed());
    (c, err)
}

#[test]
fn exclusive_queue_is_locked_for_other_connections() {
    common::require_broker();
    let q = common::unique("exclusive");
    let _g = Cleanup::new().queue(&q);
    let mut a = connect();
    declare_with(&mut a, QueueDeclare::named(&q).exclusive());

    let mut b = connect();
    let p = b.queue_declare(QueueDeclare::named(&q).exclusive());
    let err = b.wait_timeout(p, W).expect_err("declare from B");
    assert!(matches!(err, Error::ResourceLocked(_)), "{err:?}");
    assert_reply(&err, 405, "RESOURCE_LOCKED");
    assert!(!err.is_connection_error());
    let p = b.queue_declare(QueueDeclare::named(&q));
    assert!(matches!(
        b.wait_timeout(p, W),
        Err(Error::ResourceLocked(_))
    ));
    let consumer = b.basic_consume(&q);
    let err = b.wait_timeout(consumer, W).expect_err("consume from B");
    assert!(matches!(err, Error::ResourceLocked(_)), "{err:?}");
    assert_reply(&err, 405, "RESOURCE_LOCKED");
    let p = b.basic_get(&q);
    assert!(matches!(
        b.wait_timeout(p, W),
        Err(Error::ResourceLocked(_))
    ));
    // Only B's channels closed: B still works.
    assert!(b.is_open());
    let p = b.queue_declare(QueueDeclare::server_named());
    b.wait_timeout(p, W).expect("B declares another queue");
    close(b);

    // A uses its queue as usual.
    support::publish(&mut a, &q, b"mine");
    assert_eq!(message_count(&mut a, &q), 1);
    assert_eq!(delete_queue(&mut a, &q), 1);
    close(a);
}

#[test]
fn exchange_redeclare_with_another_type_fails_only_that_operation() {
    common::require_broker();
    let x = common::unique("redeclare-x");
    let q = common::unique("redeclare-q");
    let _g = Cleanup::new().exchange(&x).queue(&q);
    let mut c = connect();
    let p = c.exchange_declare(ExchangeDeclare::new(&x, "direct"));
    c.wait_timeout(p, W).expect("declare direct");
    let p = c.exchange_declare(ExchangeDeclare::new(&x, "fanout"));
    let err = c.wait_timeout(p, W).expect_err("redeclare as fanout");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    assert_reply(&err, 406, "PRECONDITION_FAILED");
    assert!(err.reply().unwrap().text.contains("'type'"), "{err}");
    // exchange.declare is class 40 method 10.
    let r = err.reply().unwrap();
    assert_eq!((r.class_id, r.method_id), (40, 10));

    // The same client goes on: the channel error stayed on its channel.
    assert!(c.is_open());
    let p = c.exchange_declare(ExchangeDeclare::new(&x, "direct"));
    c.wait_timeout(p, W).expect("same declare again");
    declare(&mut c, &q);
    let p = c.queue_bind(puka::QueueBind::new(&q, &x, "k"));
    c.wait_timeout(p, W).expect("bind");
    let p = c.basic_publish(&x, "k", b"through");
    c.wait_timeout(p, W).expect("publish");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("the message");
    assert_eq!(&d.body[..], b"through");
    c.basic_ack(&d).expect("ack");
    support::delete_exchange(&mut c, &x);
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn queue_redeclare_with_other_arguments_fails() {
    common::require_broker();
    let q = common::unique("redeclare-args");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare_with(
        &mut c,
        QueueDeclare::named(&q).argument("x-message-ttl", 60_000i32),
    );
    let p = c.queue_declare(QueueDeclare::named(&q).argument("x-message-ttl", 1_000i32));
    let err = c.wait_timeout(p, W).expect_err("redeclare");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    assert_reply(&err, 406, "PRECONDITION_FAILED");
    assert!(err.reply().unwrap().text.contains("x-message-ttl"), "{err}");
    // Durable vs not is another inequivalent argument.
    let p = c.queue_declare(
        QueueDeclare::named(&q)
            .durable()
            .argument("x-message-ttl", 60_000i32),
    );
    assert!(matches!(
        c.wait_timeout(p, W),
        Err(Error::PreconditionFailed(_))
    ));
    // The same arguments again are fine.
    declare_with(
        &mut c,
        QueueDeclare::named(&q).argument("x-message-ttl", 60_000i32),
    );
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn passive_declare_of_a_missing_queue_is_not_found() {
    common::require_broker();
    let q = common::unique("missing");
    let mut c = connect();
    let p = c.queue_declare(QueueDeclare::named(&q).passive());
    let err = c.wait_timeout(p, W).expect_err("passive declare");
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_reply(&err, 404, "NOT_FOUND");
    assert!(err.reply().unwrap().text.contains(&q), "{err}");
    let p = c.exchange_declare(ExchangeDeclare::new(&q, "direct").passive());
    assert!(matches!(c.wait_timeout(p, W), Err(Error::NotFound(_))));
    assert!(c.is_open());
    close(c);
}

#[test]
fn publish_to_a_missing_exchange_is_not_found_then_publishing_goes_on() {
    common::require_broker();
    let x = common::unique("no-such-exchange");
    let q = common::unique("after-404");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    assert!(c.confirms_enabled());
    declare(&mut c, &q);
    let p = c.basic_publish(&x, "k", b"lost");
    let err = c
        .wait_timeout(p, W)
        .expect_err("publish to a missing exchange");
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_reply(&err, 404, "NOT_FOUND");
    assert!(err.reply().unwrap().text.contains(&x), "{err}");

    // The publish channel is reopened behind the scenes.
    let p = c.basic_publish("", &q, b"fine");
    c.wait_timeout(p, W)
        .expect("publish to the default exchange");
    assert_eq!(message_count(&mut c, &q), 1);
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    assert_eq!(&d.body[..], b"fine");
    c.basic_ack(&d).expect("ack");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn publish_to_a_missing_exchange_with_a_long_non_ascii_name_is_not_found() {
    // RabbitMQ cuts the reply text at 255 bytes, inside a "ü": it used to
    // end the whole connection with InvalidUtf8 and a close 502.
    common::require_broker();
    let x = "ü".repeat(127);
    let q = common::unique("after-404-utf8");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    assert!(c.confirms_enabled());
    declare(&mut c, &q);
    let p = c.basic_publish(&x, "k", b"lost");
    let err = c
        .wait_timeout(p, W)
        .expect_err("publish to a missing exchange");
    assert!(
        matches!(err, Error::NotFound(_) | Error::ChannelError(_)),
        "{err:?}"
    );
    assert!(!err.is_connection_error(), "{err:?}");
    assert!(c.is_open());
    let p = c.basic_publish("", &q, b"fine");
    c.wait_timeout(p, W)
        .expect("publish to the default exchange");
    assert_eq!(message_count(&mut c, &q), 1);
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

#[test]
fn mandatory_unroutable_with_confirms_fails_with_no_route() {
    common::require_broker();
    let q = common::unique("no-route");
    let mut c = connect();
    assert!(c.confirms_enabled());
    let props = BasicProperties::default().with_message_id("m-1");
    let p = c.basic_publish_with("", &q, b"nowhere", &props, puka::Unroutable::Return);
    let err = c.wait_timeout(p, W).expect_err("unroutable mandatory");
    assert!(matches!(err, Error::NoRoute(_)), "{err:?}");
    assert_reply(&err, 312, "NO_ROUTE");
    assert!(!err.is_connection_error());
    // Not mandatory: silently dropped, confirmed.
    let p = c.basic_publish("", &q, b"dropped");
    c.wait_timeout(p, W).expect("non-mandatory publish");
    assert!(c.next_connection_event().is_none());
    assert!(c.is_open());
    close(c);
}

#[test]
fn mandatory_unroutable_without_confirms_comes_back_as_an_event() {
    common::require_broker();
    let q = common::unique("returned");
    let mut c = connect_with(puka::Options::default().confirms(Confirms::Off));
    assert!(!c.confirms_enabled());
    let props = BasicProperties::default()
        .with_content_type("text/plain")
        .with_header("k", "v");
    let p = c.basic_publish_with("", &q, b"come back", &props, puka::Unroutable::Return);
    // Without confirms the promise resolves once the bytes are written.
    c.wait_timeout(p, W).expect("publish");

    let deadline = std::time::Instant::now() + W;
    let event = loop {
        if let Some(ev) = c.next_connection_event() {
            break ev;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Returned event within {W:?}"
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    };
    let ConnectionEvent::Returned(r) = event else {
        panic!("expected Returned, got {event:?}");
    };
    assert_eq!(r.reply_code, 312);
    assert_eq!(r.reply_text, "NO_ROUTE");
    assert_eq!(&r.message.body[..], b"come back");
    assert_eq!(r.message.exchange(), "");
    assert_eq!(r.message.routing_key(), q.as_str());
    assert_eq!(r.message.delivery_tag, 0);
    assert_eq!(r.message.properties, props);
    assert!(!r.message.needs_ack());
    assert!(c.next_connection_event().is_none());
    assert!(c.is_open());
    close(c);
}

#[test]
fn refused_publish_without_confirms_is_reported_as_an_event() {
    common::require_broker();
    let q = common::unique("after-refused");
    let missing = common::unique("missing-exchange");
    let mut c = connect_with(puka::Options::default().confirms(Confirms::Off));
    let p = c.basic_publish(&missing, "rk", b"lost");
    // Without confirms the promise resolves once the bytes are written...
    c.wait_timeout(p, W).expect("publish");
    // ...and the broker's refusal arrives as a connection event.
    let deadline = std::time::Instant::now() + W;
    let event = loop {
        if let Some(ev) = c.next_connection_event() {
            break ev;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no PublishChannelClosed event within {W:?}"
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    };
    let ConnectionEvent::PublishChannelClosed(Error::NotFound(reply)) = event else {
        panic!("expected PublishChannelClosed(NotFound), got {event:?}");
    };
    assert_eq!(reply.code, 404);
    assert!(reply.text.contains(&missing), "{}", reply.text);
    // The next publish opens a new channel and works.
    let p = c.queue_declare(puka::QueueDeclare::named(&q).auto_delete());
    c.wait_timeout(p, W).expect("declare");
    let p = c.basic_publish("", &q, b"kept");
    c.wait_timeout(p, W).expect("publish");
    // Another channel: the get may run before the broker routed the publish.
    let deadline = std::time::Instant::now() + W;
    let got = loop {
        let p = c.basic_get_no_ack(&q);
        if let Some(d) = c.wait_timeout(p, W).expect("get") {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(&got.body[..], b"kept");
    assert!(c.is_open());
    close(c);
}

#[test]
fn connection_refused() {
    common::require_broker();
    let mut c = Client::new("amqp://guest:guest@127.0.0.1:1/").expect("Client::new");
    let p = c.handshake();
    match c.wait_timeout(p, W) {
        Err(Error::ConnectionBroken(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}")
        }
        other => panic!("expected ConnectionBroken, got {other:?}"),
    }
    assert!(c.is_closed());
    assert!(matches!(
        c.next_connection_event(),
        Some(ConnectionEvent::Closed(Error::ConnectionBroken(_)))
    ));
}

#[test]
fn bad_password_is_access_refused() {
    let (mut c, err) = failed_connect(&url_with(Some("wrong"), None), Options::default());
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    // RabbitMQ honours our authentication_failure_close capability: it
    // sends connection.close 403 instead of just dropping the socket.
    assert_reply(&err, 403, "ACCESS_REFUSED - Login was refused");
    assert!(
        err.is_connection_error(),
        "a refused login ends the connection"
    );
    assert!(matches!(
        c.next_connection_event(),
        Some(ConnectionEvent::Closed(Error::AccessRefused(_)))
    ));
}

#[test]
fn unknown_vhost_is_not_allowed() {
    let vhost = common::unique("no-such-vhost");
    let (_c, err) = failed_connect(&url_with(None, Some(&vhost)), Options::default());
    // RabbitMQ answers connection.open for an unknown vhost with
    // connection.close 530 NOT_ALLOWED "vhost ... not found".
    assert!(matches!(err, Error::NotAllowed(_)), "{err:?}");
    assert_reply(&err, 530, "NOT_ALLOWED");
    assert!(err.reply().unwrap().text.contains(&vhost), "{err}");
    assert!(err.is_connection_error());
}

#[test]
fn operations_after_close_fail_at_once() {
    common::require_broker();
    let q = common::unique("after-close");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    support::publish(&mut c, &q, b"x");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    let consumer = c.basic_consume(&q);
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
    assert!(c.is_closed());

    // The consumer that was running ended with the close, as asked: a
    // value, then its promise is spent.
    assert!(matches!(c.wait_timeout(consumer, Duration::ZERO), Ok(None)));
    assert!(matches!(
        c.wait_timeout(consumer, Duration::ZERO),
        Err(Error::UnknownPromise)
    ));
    // Every operation resolves already, with ConnectionClosed: a zero
    // timeout is enough to get the result.
    let p = c.queue_declare(QueueDeclare::named(&q));
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    let p = c.basic_publish("", &q, b"late");
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    let p = c.basic_get(&q);
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    let p = c.basic_consume(&q);
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    let p = c.basic_cancel(consumer);
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    let p = c.tx_select();
    assert!(matches!(
        c.wait_timeout(p, Duration::ZERO),
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(c.basic_ack(&d), Err(Error::ConnectionClosed)));
    // Blocking waits return too (no hang): the connection is over.
    let p = c.queue_purge(&q);
    {
        let _w = common::watchdog("wait after close", Duration::from_secs(60));
        assert!(matches!(c.wait(p), Err(Error::ConnectionClosed)));
        c.run_loop(None)
            .expect("run_loop returns on a closed client");
    }
    // Closing again is fine.
    let p = c.close();
    c.wait_timeout(p, Duration::ZERO).expect("second close");

    // The unacked message went back to the queue.
    let mut c = connect();
    let mut count = message_count(&mut c, &q);
    for _ in 0..50 {
        if count == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        count = message_count(&mut c, &q);
    }
    assert_eq!(count, 1);
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

#[test]
fn password_never_printed() {
    const SECRET: &str = "s3cr3t";
    let url = url_with(Some(SECRET), None);
    assert!(url.contains(SECRET));
    let mut shown = Vec::new();

    let (mut c, err) = failed_connect(&url, Options::default());
    assert!(matches!(err, Error::AccessRefused(_)), "{err:?}");
    assert_eq!(c.params().password(), SECRET, "readable on purpose");
    shown.push(format!("{c:?}"));
    shown.push(c.params().to_string());
    shown.push(format!("{:?}", c.params()));
    shown.push(format!("{err} {err:?}"));
    while let Some(ev) = c.next_connection_event() {
        shown.push(format!("{ev:?}"));
        if let ConnectionEvent::Closed(e) = ev {
            shown.push(e.to_string());
        }
    }
    let p = c.queue_declare(QueueDeclare::server_named());
    let e = c.wait_timeout(p, W).expect_err("closed client");
    shown.push(format!("{e} {e:?}"));

    // A URL error names the part, not the text.
    for bad in [
        format!("amqp://guest:{SECRET}@127.0.0.1:notaport/"),
        format!("amqp://guest:{SECRET}%zz@127.0.0.1/"),
        format!("amqp://guest:{SECRET}@/"),
        format!("http://guest:{SECRET}@127.0.0.1/"),
    ] {
        match Client::new(&bad) {
            Err(e) => shown.push(format!("{e} {e:?}")),
            Ok(c) => {
                shown.push(format!("{c:?}"));
                shown.push(c.params().to_string());
            }
        }
    }
    // An open connection too.
    let good = connect();
    shown.push(format!("{good:?}"));
    close(good);

    for s in &shown {
        assert!(!s.contains(SECRET), "password shown in {s:?}");
    }
}
