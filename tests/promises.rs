//! What the docs promise, checked against a real broker: when acks leave the
//! socket, pipelined operations on one channel, consumer tags and server
//! cancels of multi-queue consumers, transactions over acks, graceful close,
//! waiting for consumers, re-entrant callbacks, foreign promises, held gets
//! and drop.

mod common;
mod support;

use puka::{
    AckTiming, Client, Confirms, Consume, Delivery, Error, Options, Promise, QueueDeclare,
    QueueDelete,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use support::{close, connect, connect_with, declare, delete_queue, message_count, next, publish};
use support::{Cleanup, W};

/// Shuts the client's socket down under it (as Python puka's bug-3 test
/// does): nothing queued in the client gets out after this.
fn cut(c: &Client) {
    socket2::SockRef::from(c)
        .shutdown(std::net::Shutdown::Both)
        .expect("shutdown");
}

/// Waits until `queue` has no consumer (the broker saw the connection go and
/// requeued what was unacked), then returns its ready messages.
fn settled_count(observer: &mut Client, queue: &str) -> u32 {
    let deadline = Instant::now() + W;
    loop {
        let p = observer.queue_declare(QueueDeclare::named(queue).passive());
        let ok = observer.wait_timeout(p, W).expect("passive declare");
        if ok.consumer_count == 0 {
            return ok.message_count;
        }
        assert!(Instant::now() < deadline, "the consumer never went away");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fill(c: &mut Client, q: &str, n: usize) {
    for i in 0..n {
        publish(c, q, format!("m{i}").as_bytes());
    }
}

/// Three messages in a fresh queue; `handle` consumes and acks them with a
/// client made with `options`; then that client's socket is cut under it
/// (nothing queued in the client gets out after that): none of the three
/// may come back to the queue.
fn acks_survive_a_cut(prefix: &str, options: Options, handle: impl FnOnce(&mut Client, &str)) {
    let q = common::unique(prefix);
    let _g = Cleanup::new().queue(&q);
    let mut observer = connect();
    declare(&mut observer, &q);
    fill(&mut observer, &q, 3);
    let mut c = connect_with(options);
    handle(&mut c, &q);
    cut(&c);
    assert_eq!(
        settled_count(&mut observer, &q),
        0,
        "acked messages came back"
    );
    drop(c);
    delete_queue(&mut observer, &q);
    close(observer);
}

#[test]
fn acks_are_on_the_wire_when_wait_returns() {
    acks_survive_a_cut("acks-wait", Options::default(), |c, q| {
        let consumer = c.basic_consume_with(Consume::queue(q).prefetch(10));
        for _ in 0..3 {
            let d = next(c, consumer);
            c.basic_ack(&d).expect("ack");
        }
        // The last ack was made after the last call into the client: one
        // more call (any wait) hands it over.
        let p = c.queue_declare(QueueDeclare::named(q).passive());
        c.wait_timeout(p, W).expect("declare");
    });
}

#[test]
fn acks_are_on_the_wire_when_run_loop_returns() {
    acks_survive_a_cut("acks-loop", Options::default(), |c, q| {
        let seen = Rc::new(RefCell::new(0));
        let s = seen.clone();
        c.basic_consume_then(Consume::queue(q).prefetch(10), move |c, d| {
            let d = d.expect("delivery").expect("not ended");
            c.basic_ack(&d).expect("ack");
            *s.borrow_mut() += 1;
            if *s.borrow() == 3 {
                c.loop_break();
            }
        });
        c.run_loop(Some(W)).expect("run_loop");
        assert_eq!(*seen.borrow(), 3);
    });
}

#[test]
fn flush_hands_deferred_acks_over() {
    let deferred = Options::default().ack_timing(AckTiming::Deferred);
    acks_survive_a_cut("acks-flush", deferred, |c, q| {
        let consumer = c.basic_consume_with(Consume::queue(q).prefetch(100));
        for _ in 0..3 {
            let d = next(c, consumer);
            c.basic_ack(&d).expect("ack");
        }
        c.flush(W).expect("flush");
    });
}

#[test]
fn consume_then_qos_without_waiting_keeps_the_connection() {
    let q = common::unique("consume-qos");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume(&q);
    let qos = c.basic_qos(consumer, puka::Qos::prefetch(5));
    c.wait_timeout(qos, W).expect("qos");
    publish(&mut c, &q, b"x");
    let d = next(&mut c, consumer);
    c.basic_ack(&d).expect("ack");
    assert!(c.is_open());
    delete_queue(&mut c, &q);
    close(c);
}

#[test]
fn one_consumer_tag_for_two_queues_fails_locally() {
    let a = common::unique("dup-tag-a");
    let b = common::unique("dup-tag-b");
    let _g = Cleanup::new().queue(&a).queue(&b);
    let mut c = connect();
    declare(&mut c, &a);
    declare(&mut c, &b);
    let consumer = c.basic_consume_with(
        Consume::queue(&a)
            .consumer_tag("t")
            .and_queue(&b)
            .consumer_tag("t"),
    );
    assert!(matches!(
        c.wait_timeout(consumer, W),
        Err(Error::InvalidArgument(_))
    ));
    assert!(c.is_open());
    delete_queue(&mut c, &a);
    delete_queue(&mut c, &b);
    close(c);
}

#[test]
fn deleting_one_queue_of_a_multi_queue_consumer_ends_it_naming_the_queue() {
    let names: Vec<String> = (0..3).map(|i| common::unique(&format!("mq{i}"))).collect();
    let mut g = Cleanup::new();
    for n in &names {
        g = g.queue(n);
    }
    let _g = g;
    let mut c = connect();
    for n in &names {
        declare(&mut c, n);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let consumer = c.basic_consume_multi(&refs);
    let ready = c.consumer_ready(consumer);
    let tags = c.wait_timeout(ready, W).expect("consumer ready");
    assert_eq!(tags.len(), 3);
    let mut other = connect();
    delete_queue(&mut other, &names[1]);
    match c.wait_timeout(consumer, W) {
        Err(Error::ConsumerCancelled { queue, .. }) => assert_eq!(queue, names[1]),
        other => panic!("expected ConsumerCancelled, got {other:?}"),
    }
    // The others were cancelled too: nothing consumes them any more.
    let deadline = Instant::now() + W;
    for n in [&names[0], &names[2]] {
        while support::consumer_count(&mut other, n) != 0 {
            assert!(Instant::now() < deadline, "{n} still has a consumer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(c.is_open());
    delete_queue(&mut other, &names[0]);
    delete_queue(&mut other, &names[2]);
    close(other);
    close(c);
}

/// `tx_select`, `basic_get`, `basic_ack`, then commit or rollback (or
/// nothing), then the connection ends: is the message back in the queue?
fn tx_ack_outcome(end: &str) -> u32 {
    let q = common::unique(&format!("tx-ack-{end}"));
    let _g = Cleanup::new().queue(&q);
    let mut observer = connect();
    declare(&mut observer, &q);
    publish(&mut observer, &q, b"job");
    let mut c = connect_with(Options::default().confirms(Confirms::Off));
    let p = c.tx_select();
    c.wait_timeout(p, W).expect("tx_select");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("a message");
    c.basic_ack(&d).expect("ack");
    match end {
        "commit" => {
            let p = c.tx_commit();
            c.wait_timeout(p, W).expect("commit");
        }
        "rollback" => {
            let p = c.tx_rollback();
            c.wait_timeout(p, W).expect("rollback");
            // Rolled back: outstanding again.
            c.basic_reject(&d, puka::Requeue::Yes)
                .expect("the delivery is outstanding again");
            let p = c.tx_commit();
            c.wait_timeout(p, W).expect("commit of the reject");
        }
        _ => {}
    }
    close(c);
    let n = message_count(&mut observer, &q);
    delete_queue(&mut observer, &q);
    close(observer);
    n
}

#[test]
fn a_transaction_covers_acks() {
    assert_eq!(tx_ack_outcome("commit"), 0, "committed ack");
    assert_eq!(tx_ack_outcome("rollback"), 1, "rolled-back ack, requeued");
    assert_eq!(tx_ack_outcome("none"), 1, "uncommitted ack");
}

#[test]
fn close_waits_for_the_confirms_of_what_the_broker_took() {
    const N: usize = 20_000;
    let q = common::unique("close-drain");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let ps: Vec<Promise<()>> = (0..N).map(|_| c.basic_publish("", &q, b"m")).collect();
    let closed = c.close();
    // New work is refused at once.
    let late = c.basic_publish("", &q, b"late");
    assert!(matches!(
        c.wait_timeout(late, W),
        Err(Error::ConnectionClosed)
    ));
    c.wait_timeout(closed, Duration::from_secs(30))
        .expect("close");
    let mut ok = 0;
    for p in ps {
        match c.wait_timeout(p, W) {
            Ok(()) => ok += 1,
            Err(e) => assert!(e.is_outcome_unknown(), "a failure that did not happen: {e}"),
        }
    }
    let mut observer = connect();
    let held = message_count(&mut observer, &q) as usize;
    assert_eq!(ok, N, "every publish confirmed before the close");
    assert_eq!(held, N);
    delete_queue(&mut observer, &q);
    close(observer);
}

#[test]
fn close_now_reports_unconfirmed_publishes_as_unknown() {
    let q = common::unique("close-now");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let ps: Vec<Promise<()>> = (0..5000).map(|_| c.basic_publish("", &q, b"m")).collect();
    let closed = c.close_now();
    c.wait_timeout(closed, W).expect("close_now");
    let mut ok = 0;
    for p in ps {
        match c.wait_timeout(p, W) {
            Ok(()) => ok += 1,
            Err(e) => assert!(e.is_outcome_unknown(), "{e}"),
        }
    }
    let mut observer = connect();
    assert!(message_count(&mut observer, &q) as usize >= ok);
    delete_queue(&mut observer, &q);
    close(observer);
}

#[test]
fn wait_for_any_and_all_time_out() {
    let q = common::unique("wait-any");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let consumer = c.basic_consume(&q);
    let t = Instant::now();
    assert!(matches!(
        c.wait_for_any_timeout(&[consumer.id()], Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        c.wait_for_all_timeout(&[consumer.id()], Duration::from_millis(300)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(600));
    assert!(t.elapsed() < W);
    publish(&mut c, &q, b"x");
    let id = c
        .wait_for_any_timeout(&[consumer.id()], W)
        .expect("a delivery");
    assert_eq!(id, consumer.id());
    let d = next(&mut c, consumer);
    c.basic_ack(&d).expect("ack");
    delete_queue(&mut c, &q);
    close(c);
}

/// The RPC-worker shape: in the consumer's callback, ack, publish a reply
/// and `wait` for its confirm.
fn rpc_worker(prefetch: u16) {
    const N: usize = 5;
    let q = common::unique(&format!("worker-{prefetch}"));
    let replies = common::unique(&format!("replies-{prefetch}"));
    let _g = Cleanup::new().queue(&q).queue(&replies);
    let mut c = connect();
    declare(&mut c, &q);
    declare(&mut c, &replies);
    fill(&mut c, &q, N);
    let handled = Rc::new(RefCell::new(0usize));
    let h = handled.clone();
    let reply_to = replies.clone();
    c.basic_consume_then(Consume::queue(&q).prefetch(prefetch), move |c, d| {
        // The consumer ends (its queue is deleted) after the loop.
        let Ok(Some(d)) = d else { return };
        c.basic_ack(&d).expect("ack");
        let p = c.basic_publish("", &reply_to, &d.body);
        c.wait_timeout(p, W).expect("reply confirmed");
        *h.borrow_mut() += 1;
        if *h.borrow() == N {
            c.loop_break();
        }
    });
    c.run_loop(Some(W)).expect("run_loop");
    assert_eq!(*handled.borrow(), N, "prefetch {prefetch}: callbacks ran");
    assert_eq!(message_count(&mut c, &replies) as usize, N);
    delete_queue(&mut c, &q);
    delete_queue(&mut c, &replies);
    close(c);
}

#[test]
fn a_consumer_callback_may_wait() {
    rpc_worker(1);
    rpc_worker(10);
}

#[test]
fn promises_and_deliveries_of_another_client_are_refused() {
    let q = common::unique("foreign");
    let _g = Cleanup::new().queue(&q);
    let mut a = connect();
    let mut b = connect();
    declare(&mut a, &q);
    fill(&mut a, &q, 2);
    let pa = a.basic_get(&q);
    let da: Delivery = a.wait_timeout(pa, W).expect("get").expect("message");
    let pb = b.basic_get(&q);
    let db: Delivery = b.wait_timeout(pb, W).expect("get").expect("message");
    // The same channel id and delivery tag on both connections.
    assert_eq!(da.delivery_tag, db.delivery_tag);
    assert!(matches!(
        b.basic_ack(&da),
        Err(Error::UnknownDeliveryTag(_))
    ));
    let p = a.queue_declare(QueueDeclare::named(&q).passive());
    assert!(matches!(b.wait_timeout(p, W), Err(Error::ForeignPromise)));
    a.wait_timeout(p, W).expect("its own client takes it");
    b.basic_ack(&db).expect("b's own delivery");
    a.basic_ack(&da).expect("a's own delivery");
    let p = b.queue_delete(QueueDelete::new(&q));
    assert_eq!(b.wait_timeout(p, W).expect("delete"), 0);
    close(a);
    close(b);
}

#[test]
fn an_unrelated_channel_error_leaves_a_held_get_alone() {
    let q = common::unique("held-get");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    publish(&mut c, &q, b"keep");
    let p = c.basic_get(&q);
    let d = c.wait_timeout(p, W).expect("get").expect("message");
    let missing = common::unique("missing");
    let p = c.queue_declare(QueueDeclare::named(&missing).passive());
    assert!(matches!(c.wait_timeout(p, W), Err(Error::NotFound(_))));
    c.basic_ack(&d)
        .expect("the held delivery is still outstanding");
    let p = c.queue_declare(QueueDeclare::named(&q).passive());
    c.wait_timeout(p, W).expect("declare");
    assert_eq!(delete_queue(&mut c, &q), 0, "acked, not redelivered");
    close(c);
}

#[test]
fn dropping_a_client_hands_queued_publishes_over() {
    const N: u32 = 20_000;
    let q = common::unique("drop-flush");
    let _g = Cleanup::new().queue(&q);
    let mut observer = connect();
    declare(&mut observer, &q);
    {
        // The bound is generous: on a loaded machine the broker's flow
        // control can hold 5 MB back longer than the default 1 s, and what
        // is unsent at the bound is dropped (as documented).
        let options = Options::default()
            .confirms(Confirms::Off)
            .drop_flush_timeout(Duration::from_secs(30));
        let mut c = connect_with(options);
        for _ in 0..N {
            let _ = c.basic_publish("", &q, &[0u8; 200]);
        }
    }
    let deadline = Instant::now() + W;
    loop {
        let n = message_count(&mut observer, &q);
        if n == N {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {N} arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    delete_queue(&mut observer, &q);
    close(observer);
}

#[test]
fn publishes_behind_a_refused_one_are_not_reported_as_refused() {
    let q = common::unique("refused-publish");
    let _g = Cleanup::new().queue(&q);
    let mut c = connect();
    declare(&mut c, &q);
    let missing = "ü".repeat(127);
    let mut ps: Vec<Promise<()>> = (0..500).map(|_| c.basic_publish("", &q, b"m")).collect();
    let bad = c.basic_publish(&missing, "", b"x");
    ps.extend((0..500).map(|_| c.basic_publish("", &q, b"m")));
    let mut ok = 0;
    for p in ps {
        match c.wait_timeout(p, W) {
            Ok(()) => ok += 1,
            Err(e) => assert!(e.is_outcome_unknown(), "reported as refused: {e}"),
        }
    }
    let r = c.wait_timeout(bad, W);
    assert!(
        matches!(&r, Err(Error::NotFound(_))) || matches!(&r, Err(e) if e.is_outcome_unknown()),
        "{r:?}"
    );
    assert!(c.is_open(), "a channel error, not a connection error");
    assert!(message_count(&mut c, &q) as usize >= ok);
    delete_queue(&mut c, &q);
    close(c);
}
