//! Transactions and publisher confirms against a real broker.

mod common;
mod support;

use puka::{Client, Confirms, Error, Options};
use std::time::Duration;
use support::{
    assert_quiet, close, connect, connect_with, declare, delete_queue, message_count, next,
};
use support::{Cleanup, W};

fn tx_client() -> Client {
    let c = connect_with(Options::default().confirms(Confirms::Off));
    assert!(!c.confirms_enabled());
    c
}

/// Publishes without confirms: resolves once the frames are written.
fn send(c: &mut Client, queue: &str, body: &str) {
    let p = c.basic_publish("", queue, body.as_bytes());
    c.wait_timeout(p, W).expect("basic_publish");
}

fn ok(c: &mut Client, p: puka::Promise<()>, what: &str) {
    c.wait_timeout(p, W)
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
}

#[test]
fn rollback_discards_and_commit_delivers() {
    common::require_broker();
    let q = common::unique("tx");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client();
    declare(&mut c, &q);
    let p = c.tx_select();
    ok(&mut c, p, "tx_select");

    send(&mut c, &q, "r0");
    send(&mut c, &q, "r1");
    // Uncommitted publishes are not in the queue.
    assert_eq!(message_count(&mut c, &q), 0);
    let p = c.tx_rollback();
    ok(&mut c, p, "tx_rollback");
    assert_eq!(message_count(&mut c, &q), 0);

    for i in 0..3 {
        send(&mut c, &q, &format!("c{i}"));
    }
    assert_eq!(message_count(&mut c, &q), 0);
    let p = c.tx_commit();
    ok(&mut c, p, "tx_commit");
    // commit-ok comes once the messages are in the queue.
    assert_eq!(message_count(&mut c, &q), 3);

    // The channel stays transactional: the next publish waits for a commit
    // too, and is dropped when the connection closes without one.
    send(&mut c, &q, "never committed");
    assert_eq!(message_count(&mut c, &q), 3);
    close(c);

    let mut c = connect();
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = c.basic_get_no_ack(&q);
        let d = c.wait_timeout(p, W).expect("get").expect("message");
        got.push(d.body_str().unwrap().to_string());
    }
    assert_eq!(got, ["c0", "c1", "c2"]);
    let p = c.basic_get(&q);
    assert!(c.wait_timeout(p, W).expect("get").is_none());
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn empty_commit_and_rollback_succeed() {
    common::require_broker();
    let mut c = tx_client();
    let p = c.tx_select();
    ok(&mut c, p, "tx_select");
    let p = c.tx_commit();
    ok(&mut c, p, "empty commit");
    let p = c.tx_rollback();
    ok(&mut c, p, "empty rollback");
    // tx.select twice is allowed.
    let p = c.tx_select();
    ok(&mut c, p, "second tx_select");
    close(c);
}

#[test]
fn commit_without_select_is_precondition_failed() {
    common::require_broker();
    let q = common::unique("tx-noselect");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client();
    declare(&mut c, &q);
    let p = c.tx_commit();
    let err = c
        .wait_timeout(p, W)
        .expect_err("commit outside a transaction");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    assert_eq!(err.reply().unwrap().code, 406);
    let p = c.tx_rollback();
    assert!(matches!(
        c.wait_timeout(p, W),
        Err(Error::PreconditionFailed(_))
    ));
    // The publish channel is replaced; publishing goes on (untransacted).
    // Without confirms nothing orders the publish before a basic.get on
    // another channel, so a consumer receives it.
    let consumer = c.basic_consume_with(puka::Consume::queue(&q).no_ack());
    send(&mut c, &q, "plain");
    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"plain");
    let p = c.basic_cancel(consumer);
    ok(&mut c, p, "cancel");
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn transaction_survives_a_publish_channel_error() {
    common::require_broker();
    let q = common::unique("tx-after-404");
    let missing = common::unique("tx-missing-x");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client();
    declare(&mut c, &q);
    let p = c.tx_select();
    ok(&mut c, p, "tx_select");
    send(&mut c, &q, "lost with the channel");
    // The broker closes the publish channel (404) for this publish, which
    // discards the open transaction and fails the commit queued behind it
    // on the same channel. Without confirms the publish itself resolves
    // once written.
    let bad = c.basic_publish(&missing, "k", b"to a missing exchange");
    let commit = c.tx_commit();
    let err = c
        .wait_timeout(commit, W)
        .expect_err("commit behind the failing publish");
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(err.reply().unwrap().text.contains(&missing), "{err}");
    ok(&mut c, bad, "unconfirmed publish");
    assert_eq!(message_count(&mut c, &q), 0);
    assert!(c.is_open());

    // "Publishes are then transactional until the connection ends": the
    // replacement publish channel must be transactional too, so this
    // publish waits for a commit.
    send(&mut c, &q, "in the new transaction");
    assert_eq!(
        message_count(&mut c, &q),
        0,
        "a publish after tx_select bypassed the transaction"
    );
    let p = c.tx_commit();
    ok(&mut c, p, "tx_commit on the replacement channel");
    assert_eq!(message_count(&mut c, &q), 1);
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

#[test]
fn a_consumers_acks_are_part_of_the_transaction() {
    common::require_broker();
    let q = common::unique("tx-ack");
    let _g = Cleanup::new().queue(&q);
    let mut c = tx_client();
    declare(&mut c, &q);
    // A consumer started before tx_select: its channel is selected too.
    let consumer = c.basic_consume(&q);
    let p = c.tx_select();
    ok(&mut c, p, "tx_select");
    send(&mut c, &q, "m");
    let p = c.tx_commit();
    ok(&mut c, p, "tx_commit");

    let d = next(&mut c, consumer);
    assert_eq!(&d.body[..], b"m");
    c.basic_ack(&d).expect("ack");
    let p = c.tx_rollback();
    ok(&mut c, p, "tx_rollback");
    // The ack was rolled back: the message is unacked again, so
    // basic.recover redelivers it, and it is outstanding again here.
    let p = c.basic_recover(consumer, puka::Requeue::Yes);
    ok(&mut c, p, "basic_recover");
    let again = next(&mut c, consumer);
    assert_eq!(&again.body[..], b"m");
    assert!(again.redelivered);
    c.basic_ack(&again).expect("ack the redelivery");
    let p = c.tx_commit();
    ok(&mut c, p, "tx_commit of the ack");
    assert_quiet(&mut c, consumer);
    let p = c.basic_cancel(consumer);
    ok(&mut c, p, "cancel");
    close(c);

    // Committed: closing the connection does not bring it back.
    let mut c = connect();
    let p = c.basic_get(&q);
    assert!(c.wait_timeout(p, W).expect("get").is_none());
    assert_eq!(delete_queue(&mut c, &q), 0);
    close(c);
}

#[test]
fn tx_select_with_confirms_on_is_refused_and_confirms_stay_on() {
    common::require_broker();
    let q = common::unique("tx-confirms");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    assert!(c.confirms_enabled());
    declare(&mut c, &q);
    let p = c.tx_select();
    let err = c
        .wait_timeout(p, W)
        .expect_err("tx.select on a confirm channel");
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err:?}");
    assert_eq!(err.reply().unwrap().code, 406);
    assert!(c.is_open());
    assert!(c.confirms_enabled());

    // Publishing goes on, still confirmed: an unroutable mandatory message
    // fails its promise with NoRoute (it would resolve Ok, and come back as
    // a ConnectionEvent::Returned, on an unconfirmed channel).
    let missing = common::unique("tx-confirms-missing");
    let p = c.basic_publish_with(
        "",
        &missing,
        b"unroutable",
        &puka::BasicProperties::default(),
        puka::Unroutable::Return,
    );
    match c.wait_timeout(p, W) {
        Err(Error::NoRoute(_)) => {}
        other => panic!("expected NoRoute (confirms on), got {other:?}"),
    }
    support::publish(&mut c, &q, b"confirmed");
    assert_eq!(message_count(&mut c, &q), 1);
    assert!(c.next_connection_event().is_none());
    assert_eq!(delete_queue(&mut c, &q), 1);
    close(c);
}

#[test]
fn thousand_pipelined_confirmed_publishes() {
    common::require_broker();
    let q = common::unique("confirms");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    assert!(c.confirms_enabled());
    declare(&mut c, &q);
    let promises: Vec<_> = (0..1000)
        .map(|i| c.basic_publish("", &q, format!("m{i}").as_bytes()))
        .collect();
    let ids: Vec<_> = promises.iter().map(|p| p.id()).collect();
    {
        let _w = common::watchdog("wait_for_all(1000 publishes)", Duration::from_secs(120));
        c.wait_for_all(&ids).expect("wait_for_all");
    }
    for p in promises {
        // Resolved already: a zero timeout gets the result.
        c.wait_timeout(p, Duration::ZERO).expect("confirmed");
    }
    assert_eq!(message_count(&mut c, &q), 1000);
    // In publish order.
    for i in [0, 1, 2] {
        let p = c.basic_get_no_ack(&q);
        let d = c.wait_timeout(p, W).expect("get").expect("message");
        assert_eq!(d.body_str(), Some(format!("m{i}").as_str()));
    }
    assert_eq!(delete_queue(&mut c, &q), 997);
    close(c);
}
