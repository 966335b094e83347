#![cfg(feature = "tls")]
//! TLS (`amqps://`) against a real broker: a second RabbitMQ node,
//! `puka-tls@<host>`, that `scripts/tls-broker` sets up (TLS on
//! 127.0.0.1:5671, plain AMQP on 127.0.0.1:5682, EXTERNAL auth, test
//! certificates in /var/lib/rabbitmq/puka-tls/certs).
//!
//! Run with `cargo test --features tls --test tls`. The first test to need the
//! node runs `bash scripts/tls-broker` (once per test process); if that fails,
//! every test fails with its message. Nothing is skipped.

mod common;

use puka::{Client, Error, Options, QueueDeclare, ServerVerification, TlsErrorKind, TlsOptions};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bound on every wait for something that must happen (or fail).
const W: Duration = Duration::from_secs(15);
/// Where `scripts/tls-broker` puts the test certificates.
const CERTS: &str = "/var/lib/rabbitmq/puka-tls/certs";
/// The TLS listener of the test node, by a name in its certificate.
const URL: &str = "amqps://guest:guest@localhost:5671/%2f";
/// The node's plain AMQP listener.
const PLAIN_PORT: u16 = 5682;

/// The TLS test node, started (or found running) by `scripts/tls-broker`.
struct TlsBroker {
    /// Its Erlang node name, for `rabbitmqctl -n`.
    node: String,
}

/// Runs `scripts/tls-broker` once per test process; panics (in every test
/// that asks) with one line when it failed.
fn broker() -> &'static TlsBroker {
    static BROKER: OnceLock<Result<TlsBroker, String>> = OnceLock::new();
    match BROKER.get_or_init(start_broker) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn start_broker() -> Result<TlsBroker, String> {
    let node = common::run_node_script("tls-broker")?;
    Ok(TlsBroker { node })
}

/// The path of one of the test certificates or keys, which `scripts/tls-broker`
/// makes: the node is started first, so a test on a machine that never ran
/// the script finds them too, whatever it calls first.
fn cert(name: &str) -> PathBuf {
    broker();
    let p = PathBuf::from(CERTS).join(name);
    assert!(
        p.is_file(),
        "missing {} (made by scripts/tls-broker)",
        p.display()
    );
    p
}

/// Options that trust only the test CA.
fn with_ca(ca: &str) -> Options {
    Options::default().tls(TlsOptions::default().ca_file(cert(ca)))
}

/// Options that trust the test CA and present the client certificate.
fn with_client_cert(cert_name: &str, key_name: &str) -> Options {
    let mut o = with_ca("ca.pem");
    o.tls.client_cert_file = Some(cert(cert_name));
    o.tls.client_key_file = Some(cert(key_name));
    o
}

/// A client for `url` whose handshake (TLS and AMQP) finished within `W`.
fn connect(url: &str, options: Options) -> Client {
    broker();
    let mut c = Client::with_options(url, options)
        .unwrap_or_else(|e| panic!("Client::with_options({url}): {e}"));
    let p = c.handshake();
    match c.wait_timeout(p, W) {
        Ok(()) => {}
        Err(e) => panic!("connect to {url}: {e} ({e:?})"),
    }
    assert!(c.is_open());
    c
}

/// The error a connect to `url` fails with; it must fail, within `W`.
fn connect_err(url: &str, options: Options) -> Error {
    broker();
    let start = Instant::now();
    let mut c = Client::with_options(url, options)
        .unwrap_or_else(|e| panic!("Client::with_options({url}): {e}"));
    let p = c.handshake();
    let e = match c.wait_timeout(p, W) {
        Ok(()) => panic!("connect to {url} succeeded but must fail"),
        Err(Error::Timeout) => panic!("connect to {url} neither failed nor succeeded within {W:?}"),
        Err(e) => e,
    };
    eprintln!("{url}: {e}");
    assert!(start.elapsed() < W, "took {:?}", start.elapsed());
    // Not necessarily closed yet: after a protocol violation the client
    // still sends connection.close and may wait for close-ok.
    assert!(!c.is_open(), "the client is open after {e:?}");
    e
}

/// As [`connect_err`], for a connect that the TLS layer must fail: the error
/// ends the connection and its message contains one of `needles`
/// (case-insensitive).
fn tls_err(url: &str, options: Options, needles: &[&str]) -> Error {
    let e = connect_err(url, options);
    assert!(e.is_connection_error(), "{e:?}");
    let msg = format!("{e} {e:?}").to_lowercase();
    assert!(
        needles.iter().any(|n| msg.contains(&n.to_lowercase())),
        "error {e} ({e:?}) mentions none of {needles:?}"
    );
    e
}

/// Publishes `body` to an exclusive queue and gets it back, byte for byte.
fn roundtrip(c: &mut Client, body: &[u8]) {
    let q = common::unique("tls");
    let p = c.queue_declare(QueueDeclare::named(&q).exclusive());
    c.wait_timeout(p, W).expect("queue_declare");
    let p = c.basic_publish("", &q, body);
    c.wait_timeout(p, W).expect("basic_publish");
    let p = c.basic_get(&q);
    let d = c
        .wait_timeout(p, W)
        .expect("basic_get")
        .expect("the message is in the queue");
    assert_eq!(d.body.len(), body.len());
    assert!(d.body[..] == body[..], "body differs");
    assert_eq!(d.routing_key(), q.as_str());
    c.basic_ack(&d).expect("ack");
}

fn close(mut c: Client) {
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
    assert!(c.is_closed());
}

/// `user<TAB>ssl` of the broker connection whose client properties contain
/// `marker` (a unique connection name).
fn connection_info(marker: &str) -> String {
    let node = &broker().node;
    let out = common::rabbitmqctl(&[
        "-n",
        node,
        "-q",
        "list_connections",
        "user",
        "ssl",
        "client_properties",
    ]);
    let line = out
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no connection named {marker} on {node}:\n{out}"));
    let mut fields = line.split('\t');
    let user = fields.next().unwrap_or_default();
    let ssl = fields.next().unwrap_or_default();
    format!("{user}\t{ssl}")
}

/// A body of `len` bytes that is not periodic at any record or frame size.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn roundtrip_with_the_right_ca() {
    let name = common::unique("tls-roundtrip");
    let mut c = connect(URL, with_ca("ca.pem").connection_name(&name));
    assert!(c.params().tls);
    assert_eq!(connection_info(&name), "guest\ttrue");

    roundtrip(&mut c, b"Hello over TLS!");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    roundtrip(&mut c, &all_bytes);
    roundtrip(&mut c, b"");
    close(c);
}

#[test]
fn one_mib_message_roundtrip() {
    // Many TLS records (16 KiB each) and AMQP frames, both ways, in one
    // message: no reply comes from the broker until all of it is sent.
    let mut c = connect(URL, with_ca("ca.pem"));
    roundtrip(&mut c, &pattern(1 << 20));
    close(c);
}

#[test]
fn many_messages_in_flight() {
    let mut c = connect(URL, with_ca("ca.pem"));
    let q = common::unique("tls-burst");
    let p = c.queue_declare(QueueDeclare::named(&q).exclusive());
    c.wait_timeout(p, W).expect("queue_declare");
    let bodies: Vec<Vec<u8>> = (0..300).map(|i| pattern(100 + i * 97)).collect();
    let publishes: Vec<_> = bodies.iter().map(|b| c.basic_publish("", &q, b)).collect();
    for p in publishes {
        c.wait_timeout(p, W).expect("basic_publish");
    }
    let consumer = c.basic_consume(&q);
    for (i, body) in bodies.iter().enumerate() {
        let d = c
            .wait_timeout(consumer, W)
            .expect("a delivery")
            .expect("not ended");
        assert!(d.body[..] == body[..], "message {i} differs");
        c.basic_ack(&d).expect("ack");
    }
    close(c);
}

#[test]
fn ip_address_in_the_certificate() {
    // The server certificate names IP 127.0.0.1 besides DNS localhost.
    let mut c = connect("amqps://guest:guest@127.0.0.1:5671/%2f", with_ca("ca.pem"));
    roundtrip(&mut c, b"by address");
    close(c);
}

/// Asserts that `e` is a refused server certificate whose message names
/// `advice` (what it was checked against, what to change).
fn assert_certificate_error(e: &Error, advice: &str) {
    match e {
        Error::Tls(t) if t.kind == TlsErrorKind::ServerCertificate => {}
        e => panic!("not a server certificate error: {e:?}"),
    }
    assert!(e.to_string().contains(advice), "{e} lacks {advice:?}");
}

#[test]
fn wrong_ca_is_refused() {
    let e = tls_err(
        URL,
        with_ca("wrong-ca.pem"),
        &["UnknownIssuer", "unknown issuer"],
    );
    assert_certificate_error(&e, "TlsOptions::ca_file only");
}

#[test]
fn default_roots_do_not_trust_the_test_ca() {
    // ServerVerification::Webpki: the webpki roots, which do not know the
    // test CA.
    assert_eq!(
        Options::default().tls.verification,
        ServerVerification::Webpki
    );
    let e = tls_err(
        URL,
        Options::default(),
        &["UnknownIssuer", "unknown issuer"],
    );
    assert_certificate_error(&e, "webpki");
}

#[test]
fn wrong_server_name_is_refused() {
    // Verified against the SNI name, which the certificate does not have.
    let e = tls_err(
        "amqps://guest:guest@127.0.0.1:5671/%2f?server_name_indication=wrong.example",
        with_ca("ca.pem"),
        &["NotValidForName", "not valid for name"],
    );
    assert_certificate_error(&e, "server_name_indication");
}

#[test]
fn external_auth_with_a_client_certificate() {
    let name = common::unique("tls-external");
    let mut c = connect(
        "amqps://localhost:5671/%2f?auth_mechanism=external",
        with_client_cert("client.pem", "client-key.pem").connection_name(&name),
    );
    // The broker took the user name from the certificate's common name.
    assert_eq!(connection_info(&name), "puka-client\ttrue");
    roundtrip(&mut c, b"as puka-client");
    close(c);
}

#[test]
fn external_auth_without_a_client_certificate_is_refused() {
    // RabbitMQ 3.10 offers EXTERNAL on every TLS connection and refuses the
    // login (403) when there is no peer certificate; other versions offer
    // it only to connections that have one.
    let e = connect_err(
        "amqps://localhost:5671/%2f?auth_mechanism=external",
        with_ca("ca.pem"),
    );
    assert!(
        matches!(e, Error::AccessRefused(_) | Error::NoAuthMechanism(_)),
        "{e:?}"
    );
}

#[test]
fn client_certificate_with_plain_login() {
    let name = common::unique("tls-mutual-plain");
    let mut c = connect(
        URL,
        with_client_cert("client.pem", "client-key.pem").connection_name(&name),
    );
    assert_eq!(connection_info(&name), "guest\ttrue");
    roundtrip(&mut c, b"mutual TLS, PLAIN login");
    close(c);
}

#[test]
fn client_certificate_from_an_unknown_ca_is_refused() {
    // The broker verifies client certificates it is given (verify_peer).
    let e = tls_err(
        URL,
        with_client_cert("wrong-client.pem", "wrong-client-key.pem"),
        &["alert", "certificate", "UnknownCA"],
    );
    assert!(
        matches!(&e, Error::Tls(t) if t.kind == TlsErrorKind::RefusedByPeer),
        "{e:?}"
    );
}

#[test]
fn dangerous_skip_verification_needs_no_ca() {
    let options = Options::default().tls(TlsOptions::default().dangerous_skip_verification());
    let mut c = connect(URL, options.clone());
    roundtrip(&mut c, b"unverified");
    close(c);
    // Nor does it check the name.
    let c = connect(
        "amqps://guest:guest@127.0.0.1:5671/%2f?server_name_indication=wrong.example",
        options,
    );
    close(c);
}

#[test]
fn amqps_defaults_to_port_5671() {
    let c = connect("amqps://guest:guest@localhost/%2f", with_ca("ca.pem"));
    assert!(c.params().tls);
    assert_eq!(c.params().port, 5671);
    close(c);
    let c = Client::with_options("amqps://localhost", with_ca("ca.pem")).expect("client");
    assert_eq!(c.params().port, 5671);
}

#[test]
fn plain_client_on_the_tls_port_fails() {
    // The broker's TLS listener drops a connection that does not start
    // with a TLS handshake.
    let e = connect_err("amqp://guest:guest@127.0.0.1:5671/%2f", Options::default());
    assert!(e.is_connection_error(), "{e:?}");
}

#[test]
fn tls_client_on_the_plain_port_fails() {
    let url = format!("amqps://guest:guest@localhost:{PLAIN_PORT}/%2f");
    // The broker answers the ClientHello with an AMQP protocol header,
    // which is no TLS record.
    let e = connect_err(&url, with_ca("ca.pem"));
    assert!(e.is_connection_error(), "{e:?}");
}

#[test]
fn the_plain_listener_of_the_test_node_works() {
    // Sanity check of the node itself, without TLS.
    let url = format!("amqp://guest:guest@127.0.0.1:{PLAIN_PORT}/%2f");
    let mut c = connect(&url, Options::default());
    assert!(!c.params().tls);
    roundtrip(&mut c, b"plain");
    close(c);
}

#[test]
fn each_address_gets_its_own_server_name() {
    broker();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let options = || with_ca("ca.pem").address_order(puka::AddressOrder::InOrder);
    // The first address's wrong name is not used for the second.
    let urls = [
        format!("amqps://guest:guest@127.0.0.1:{refused}/%2f?server_name_indication=wrong.example"),
        "amqps://guest:guest@127.0.0.1:5671/%2f".to_string(),
    ];
    let mut c = Client::with_addresses(&urls, options()).expect("client");
    let p = c.handshake();
    c.wait_timeout(p, W).expect("connect to the second address");
    assert_eq!(c.connected_address().map(|a| a.index), Some(1));
    roundtrip(&mut c, b"second address");
    close(c);
    // The second address's own (wrong) name is.
    let urls = [
        format!("amqps://guest:guest@127.0.0.1:{refused}/%2f"),
        "amqps://guest:guest@127.0.0.1:5671/%2f?server_name_indication=wrong.example".to_string(),
    ];
    let mut c = Client::with_addresses(&urls, options()).expect("client");
    let p = c.handshake();
    let e = c.wait_timeout(p, W).expect_err("wrong name");
    let msg = format!("{e} {e:?}").to_lowercase();
    assert!(
        msg.contains("notvalidforname") || msg.contains("not valid for name"),
        "{e:?}"
    );
}

#[test]
fn an_invalid_server_name_is_a_config_error_when_the_client_is_made() {
    // No TLS node needed: nothing is sent. A listener shows that no TCP
    // connect is even started.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("local_addr").port();
    let good = format!("amqps://guest:s3cret@127.0.0.1:{port}/%2f");
    let cases = [
        // A host rustls refuses as a server name (`!` is allowed in a URL host).
        (
            vec![format!("amqps://guest:s3cret@bad!host:{port}/%2f")],
            "bad!host",
        ),
        // A server_name_indication it refuses, for a host it takes.
        (
            vec![format!("{good}?server_name_indication=bad..name")],
            "bad..name",
        ),
        // The second address's name, though the first is good.
        (
            vec![
                good.clone(),
                format!("{good}?server_name_indication=-bad.example"),
            ],
            "-bad.example",
        ),
    ];
    let options = || Options::default().address_order(puka::AddressOrder::InOrder);
    for (urls, name) in cases {
        match Client::with_addresses(&urls, options()) {
            Err(Error::Config(m)) => {
                assert!(m.contains(&format!("{name:?}")), "{m}");
                assert!(!m.contains("s3cret"), "{m}");
            }
            other => panic!("{urls:?}: {other:?}"),
        }
    }
    match Client::new(&format!("amqps://guest:s3cret@bad!host:{port}/%2f")) {
        Err(Error::Config(m)) => assert!(m.contains("\"bad!host\""), "{m}"),
        other => panic!("Client::new: {other:?}"),
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a TCP connect was made: {other:?}"),
    }
    // Without TLS there is no server name to check.
    let plain =
        format!("amqp://guest:s3cret@127.0.0.1:{port}/%2f?server_name_indication=bad..name");
    Client::new(&plain).expect("a plain client ignores server_name_indication");
}
