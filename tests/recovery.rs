//! Automatic recovery against the real broker: an operator closes the
//! connection (320 CONNECTION_FORCED, what a node shutting down sends too);
//! the client reconnects, restores what it declared, and its consumer goes
//! on. (Node kills on a 3-node cluster are in tests/cluster.rs.)

mod common;
mod support;

use puka::{
    Client, ConnectionEvent, Consume, Error, ExchangeDeclare, Options, QueueBind, QueueDeclare,
    Recovery,
};
use std::time::{Duration, Instant};
use support::{Cleanup, W};

/// The broker's id (pid) of the connection named `name`.
fn connection_pid(name: &str) -> String {
    let deadline = Instant::now() + W;
    loop {
        let out = common::rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]);
        if let Some(line) = out.lines().find(|l| l.contains(&format!("\"{name}\""))) {
            return line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no connection named {name}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drives `c` until `pick` takes a connection event; the events seen.
fn await_event(
    c: &mut Client,
    seen: &mut Vec<String>,
    what: &str,
    pick: impl Fn(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    let deadline = Instant::now() + W;
    loop {
        while let Some(ev) = c.next_connection_event() {
            seen.push(format!("{ev:?}"));
            if pick(&ev) {
                return ev;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {W:?}; saw {seen:?}"
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
}

#[test]
fn a_forced_close_is_recovered_with_topology_and_consumer() {
    common::require_broker();
    let name = common::unique("recovering");
    let q = common::unique("rec-q");
    let x = common::unique("rec-x");
    let _g = Cleanup::new().queue(&q).exchange(&x);
    let mut c = Client::with_options(
        &common::amqp_url(),
        Options::default().connection_name(&name).recovery(Some(
            Recovery::default().initial_backoff(Duration::from_millis(50)),
        )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.exchange_declare(ExchangeDeclare::new(&x, "direct"))
        .wait_timeout(&mut c, W)
        .expect("exchange");
    c.queue_declare(QueueDeclare::named(&q))
        .wait_timeout(&mut c, W)
        .expect("queue");
    c.queue_bind(QueueBind::new(&q, &x, "k"))
        .wait_timeout(&mut c, W)
        .expect("bind");
    // A server-named exclusive queue: it dies with the connection and comes
    // back under a new name.
    let tmp = c
        .queue_declare(QueueDeclare::server_named())
        .wait_timeout(&mut c, W)
        .expect("server-named")
        .queue
        .to_string();
    let consumer = c.basic_consume_with(Consume::queue(&q).prefetch(10));
    let tags = c
        .consumer_ready(consumer)
        .wait_timeout(&mut c, W)
        .expect("consumer");
    c.basic_publish(&x, "k", b"before")
        .wait_timeout(&mut c, W)
        .expect("publish");
    let before = c
        .wait_timeout(consumer, W)
        .expect("delivery before")
        .expect("not ended");
    assert_eq!(&before.body[..], b"before");

    // An unconfirmed publish in flight and an operator's close.
    let pid = connection_pid(&name);
    common::rabbitmqctl(&["close_connection", &pid, "recovery test"]);
    let mut seen = Vec::new();
    let lost = await_event(&mut c, &mut seen, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected(_))
    });
    assert!(
        matches!(&lost, ConnectionEvent::Disconnected(Error::ConnectionForced(r)) if r.code == 320),
        "{lost:?}"
    );
    // Acking a delivery from before the loss fails locally (its channel is
    // gone), now and after the reconnection.
    assert!(c.basic_ack(&before).is_err());
    let t0 = Instant::now();
    await_event(&mut c, &mut seen, "Reconnected", |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    });
    let renamed = await_event(&mut c, &mut seen, "QueueRenamed", |e| {
        matches!(e, ConnectionEvent::QueueRenamed { .. })
    });
    assert!(
        matches!(&renamed, ConnectionEvent::QueueRenamed { old, new } if *old == tmp && *new != tmp),
        "{renamed:?}"
    );
    // The binding is restored after the queue it names: a publish that
    // needs it waits for `Restored`.
    await_event(&mut c, &mut seen, "Restored", |e| {
        matches!(e, ConnectionEvent::Restored)
    });
    eprintln!("reconnected in {:?}; events {seen:?}", t0.elapsed());

    // The exchange, queue and binding are back, and the same consumer
    // promise goes on with the same consumer tag.
    let p = c.basic_publish(&x, "k", b"after");
    p.wait_timeout(&mut c, W).expect("publish after recovery");
    // The message that was never acked comes again (redelivered), then the
    // new one.
    let again = c
        .wait_timeout(consumer, W)
        .expect("redelivery")
        .expect("not ended");
    assert_eq!(&again.body[..], b"before");
    assert!(again.redelivered);
    c.basic_ack(&again).expect("ack the redelivery");
    let after = c
        .wait_timeout(consumer, W)
        .expect("delivery after recovery")
        .expect("not ended");
    assert_eq!(&after.body[..], b"after");
    assert_eq!(after.consumer_tag(), tags[0], "consumer tags stay stable");
    c.basic_ack(&after).expect("ack after recovery");
    assert!(matches!(
        c.basic_ack(&before),
        Err(Error::UnknownDeliveryTag(_))
    ));
    assert!(c.is_open());
    assert!(
        !seen.iter().any(|e| e.starts_with("RecoveryFailed")),
        "{seen:?}"
    );
    assert_eq!(c.stats().consumers, 1);
    assert_eq!(c.stats().reconnects, 1);

    // The user's own close is never recovered.
    c.close().wait_timeout(&mut c, W).expect("close");
    std::thread::sleep(Duration::from_millis(300));
    c.run_loop(Some(Duration::from_millis(100)))
        .expect("run_loop");
    assert!(c.is_closed());
    let mut observer = support::connect();
    support::delete_queue(&mut observer, &q);
    support::delete_exchange(&mut observer, &x);
    support::close(observer);
}

#[test]
fn a_refused_login_is_not_recovered() {
    common::require_broker();
    let url = common::amqp_url().replacen("guest:guest", "guest:wrong", 1);
    let mut c = Client::with_options(&url, Options::default().recovery(Some(Recovery::default())))
        .expect("client");
    let err = c.handshake().wait_timeout(&mut c, W).expect_err("refused");
    assert!(err.is_connection_error(), "{err:?}");
    assert!(c.is_closed());
    let mut events = Vec::new();
    while let Some(e) = c.next_connection_event() {
        events.push(format!("{e:?}"));
    }
    assert!(
        events.iter().all(|e| !e.starts_with("Reconnecting")),
        "{events:?}"
    );
}

/// A blackholed connection (the fault proxy forwards nothing, the socket
/// stays open) with a 1 s heartbeat: detected within two intervals, then
/// failover to the next address, past the proxy whose handshake stalls.
#[test]
fn a_blackholed_connection_is_detected_and_failed_over() {
    use puka::AddressOrder;
    use support::proxy::{Mode, Proxy};
    common::require_broker();
    let proxy = Proxy::start();
    let name = common::unique("blackholed");
    let via_proxy = proxy.url("heartbeat=1&connection_timeout=1000");
    let direct = support::proxy::url_via(
        &common::amqp_url(),
        support::proxy::broker_addr(),
        "heartbeat=1&connection_timeout=1000",
    );
    let mut c = Client::with_addresses(
        &[via_proxy, direct],
        Options::default()
            .connection_name(&name)
            .address_order(AddressOrder::InOrder)
            .recovery(Some(
                Recovery::default().initial_backoff(Duration::from_millis(50)),
            )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    assert_eq!(
        c.connected_address().map(|a| a.index),
        Some(0),
        "through the proxy"
    );
    proxy.set_mode(Mode::Blackhole);
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let lost = await_event(&mut c, &mut seen, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected(_))
    });
    let detected = t0.elapsed();
    assert!(
        matches!(
            lost,
            ConnectionEvent::Disconnected(Error::HeartbeatTimeout(_))
        ),
        "{lost:?}"
    );
    assert!(
        detected < Duration::from_millis(2600),
        "detected after {detected:?}"
    );
    await_event(&mut c, &mut seen, "Reconnected", |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    });
    let failed_over = t0.elapsed();
    assert_eq!(c.connected_address().map(|a| a.index), Some(1), "directly");
    eprintln!("blackhole: detected in {detected:?}, failed over in {failed_over:?}; {seen:?}");
    c.queue_declare(QueueDeclare::server_named())
        .wait_timeout(&mut c, W)
        .expect("works after failover");
    c.close().wait_timeout(&mut c, W).expect("close");
}

/// A client named `name` that recovers, has declared the queue `q` and
/// selected transaction mode.
fn tx_client(name: &str, q: &str) -> Client {
    let mut c = Client::with_options(
        &common::amqp_url(),
        Options::default()
            .connection_name(name)
            .confirms(puka::Confirms::Off)
            .recovery(Some(
                Recovery::default().initial_backoff(Duration::from_millis(50)),
            )),
    )
    .expect("client");
    c.handshake().wait_timeout(&mut c, W).expect("connect");
    c.queue_declare(QueueDeclare::named(q))
        .wait_timeout(&mut c, W)
        .expect("queue");
    c.tx_select().wait_timeout(&mut c, W).expect("tx_select");
    c
}

/// Transaction mode is restored: after recovery a publish can still be
/// rolled back.
#[test]
fn transaction_mode_is_restored() {
    common::require_broker();
    let name = common::unique("rec-tx");
    let q = common::unique("rec-tx-q");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client(&name, &q);
    let pid = connection_pid(&name);
    common::rabbitmqctl(&["close_connection", &pid, "tx recovery test"]);
    let mut seen = Vec::new();
    await_event(&mut c, &mut seen, "Reconnected", |e| {
        matches!(e, ConnectionEvent::Reconnected { .. })
    });
    c.basic_publish("", &q, b"rolled back")
        .wait_timeout(&mut c, W)
        .expect("publish");
    c.tx_rollback()
        .wait_timeout(&mut c, W)
        .expect("rollback: the channel is transactional again");
    c.basic_publish("", &q, b"committed")
        .wait_timeout(&mut c, W)
        .expect("publish");
    c.tx_commit().wait_timeout(&mut c, W).expect("commit");
    let got = c
        .basic_get_no_ack(&q)
        .wait_timeout(&mut c, W)
        .expect("get")
        .expect("a message");
    assert_eq!(&got.body[..], b"committed");
    assert!(c
        .basic_get_no_ack(&q)
        .wait_timeout(&mut c, W)
        .expect("get")
        .is_none());
    c.close().wait_timeout(&mut c, W).expect("close");
}

/// A publish made while the reconnection's handshake runs (from the
/// `Reconnecting` callback: the fresh connection is not open yet) is in the
/// restored transaction: the rollback undoes it. (It used to go out ahead
/// of the restored `tx.select`, applied at once.)
#[test]
fn a_publish_made_while_reconnecting_is_in_the_restored_transaction() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    common::require_broker();
    let name = common::unique("rec-tx-early");
    let q = common::unique("rec-tx-early-q");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client(&name, &q);
    let early = Rc::new(Cell::new(None));
    let restored = Rc::new(Cell::new(false));
    let seen = Rc::new(RefCell::new(Vec::new()));
    {
        let (early, restored, seen, q) = (early.clone(), restored.clone(), seen.clone(), q.clone());
        c.set_connection_callback(move |c, ev| {
            seen.borrow_mut().push(format!("{ev:?}"));
            match ev {
                ConnectionEvent::Reconnecting { .. } if early.get().is_none() => {
                    assert!(!c.is_open(), "the handshake is under way");
                    early.set(Some(c.basic_publish("", &q, b"made while reconnecting")));
                }
                ConnectionEvent::Restored => restored.set(true),
                _ => {}
            }
        });
    }
    let pid = connection_pid(&name);
    common::rabbitmqctl(&["close_connection", &pid, "tx recovery test"]);
    let deadline = Instant::now() + W;
    while !restored.get() {
        assert!(
            Instant::now() < deadline,
            "not restored within {W:?}; saw {:?}",
            seen.borrow()
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    let early = early.get().expect("published on Reconnecting");
    early.wait_timeout(&mut c, W).expect("the early publish");
    c.tx_rollback().wait_timeout(&mut c, W).expect("rollback");
    let left = c
        .queue_declare(QueueDeclare::named(&q).passive())
        .wait_timeout(&mut c, W)
        .expect("passive declare");
    assert_eq!(
        left.message_count, 0,
        "the publish made while reconnecting was applied outside the transaction"
    );
    c.close().wait_timeout(&mut c, W).expect("close");
}
