//! Bounds against a real broker: fire-and-forget operations return the
//! client to its baseline, the unconfirmed-publish limit holds, and
//! `update_secret`. (Backpressure while the broker is blocked by a memory
//! alarm, and the blocked timeout, are in `tests/reliability.rs`, on the
//! fault node.)

mod common;
mod support;

use puka::{BasicProperties, Error, Options, QueueDeclare, WhenFull};
use std::time::{Duration, Instant};
use support::{close, connect, connect_with, declare, delete_queue, message_count};
use support::{Cleanup, W};

#[test]
fn fire_and_forget_operations_return_to_baseline() {
    const N: usize = 100_000;
    let q = common::unique("forget");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let (promises0, channels0) = (c.promise_count(), c.channel_count());
    let started = Instant::now();
    for _ in 0..N {
        let p = c.queue_purge(&q);
        c.forget(p);
    }
    // All of them run (waiting for channels past channel_max), then the
    // client is back where it was: no promise kept, the pool shrunk.
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.promise_count() > promises0 {
        assert!(
            Instant::now() < deadline,
            "{} promises still held",
            c.promise_count()
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    // Channels closed past the idle cap answer with close-ok.
    let deadline = Instant::now() + W;
    while c.channel_count() > channels0 + 16 {
        assert!(
            Instant::now() < deadline,
            "{} channels open",
            c.channel_count()
        );
        c.run_loop(Some(Duration::from_millis(50)))
            .expect("run_loop");
    }
    eprintln!(
        "{N} fire-and-forget purges in {:.2?}: promises {promises0} -> {}, channels \
         {channels0} -> {}",
        started.elapsed(),
        c.promise_count(),
        c.channel_count()
    );
    assert!(c.is_open());
    delete_queue(&mut c, &q);
    close(c);
}

#[test]
fn the_unconfirmed_limit_holds() {
    const MAX: usize = 50;
    let q = common::unique("in-flight");
    let _g = Cleanup::new().queue(&q);
    // Blocking: every publish returns with at most MAX in flight.
    let mut c = connect_with(Options::default().max_unconfirmed(Some(MAX)));
    declare(&mut c, &q);
    let mut most = 0;
    let ps: Vec<_> = (0..2_000)
        .map(|_| {
            let p = c.basic_publish("", &q, &[1u8; 1024]);
            most = most.max(c.unconfirmed_count());
            p
        })
        .collect();
    assert!(most <= MAX, "{most} unconfirmed in flight");
    for p in ps {
        c.wait_timeout(p, W).expect("confirmed");
    }
    assert_eq!(message_count(&mut c, &q), 2_000);
    close(c);

    // Refusing: at the limit, WouldBlock and nothing queued.
    let mut c = connect_with(
        Options::default()
            .max_unconfirmed(Some(MAX))
            .when_full(WhenFull::Refuse),
    );
    let mut refused = 0;
    let mut accepted = Vec::new();
    for _ in 0..1_000 {
        match c.try_basic_publish(
            "",
            &q,
            b"x",
            &BasicProperties::default(),
            puka::Unroutable::Drop,
        ) {
            Ok(p) => accepted.push(p),
            Err(Error::WouldBlock) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(c.unconfirmed_count() <= MAX);
    }
    assert!(refused > 0, "never refused");
    let p = c.basic_publish("", &q, b"y");
    if !c.can_publish() {
        assert!(matches!(c.wait_timeout(p, W), Err(Error::WouldBlock)));
    }
    for p in &accepted {
        c.wait_timeout(*p, W).expect("confirmed");
    }
    assert!(c.can_publish());
    let n = accepted.len();
    eprintln!("Refuse: {n} accepted, {refused} refused at {MAX} in flight");
    let p = c.queue_delete(puka::QueueDelete::new(&q));
    let held = c.wait_timeout(p, W).expect("delete") as usize;
    assert!(held >= 2_000 + n, "{held}");
    close(c);
}

#[test]
fn update_secret_is_accepted() {
    let mut c = connect();
    let p = c.update_secret("guest", "rotation");
    c.wait_timeout(p, W).expect("the same password is accepted");
    assert!(c.is_open());
    let p = c.queue_declare(QueueDeclare::server_named());
    c.wait_timeout(p, W).expect("the connection still works");
    // RabbitMQ 3.10's internal backend does not check the new secret again
    // (it accepts any): refusal, which token backends do with 530, is
    // tested against the fake broker in tests/hostile.rs.
    close(c);
}
