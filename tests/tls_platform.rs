//! `ServerVerification::Platform` (feature `tls-platform-verifier`) against
//! the TLS test node of `scripts/tls-broker` (see tests/tls.rs), whose CA is
//! in no system store.
//!
//! On Linux the platform verifier reads the system's CA bundle, or only
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set (rustls-native-certs,
//! through rustls-platform-verifier), when the client is made. Environment
//! variables belong to the whole process, so this binary has one test that
//! sets them and runs the cases in order; no other test shares the process.
//!
//! Run with `cargo test --features tls-platform-verifier --test tls_platform`.

mod common;

use puka::{Client, Error, Options, QueueDeclare, ServerVerification, TlsErrorKind, TlsOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The bound on every wait for something that must happen (or fail).
const W: Duration = Duration::from_secs(15);
/// Where `scripts/tls-broker` puts the test certificates.
const CERTS: &str = "/var/lib/rabbitmq/puka-tls/certs";
/// The TLS listener of the test node, by a name in its certificate.
const URL: &str = "amqps://guest:guest@localhost:5671/%2f";

fn cert(name: &str) -> PathBuf {
    let p = Path::new(CERTS).join(name);
    assert!(
        p.is_file(),
        "missing {} (made by scripts/tls-broker)",
        p.display()
    );
    p
}

fn platform() -> Options {
    let o = Options::default().tls(TlsOptions::default().platform_verifier());
    assert_eq!(o.tls.verification, ServerVerification::Platform);
    o
}

/// Sets (or with `None` removes) the two variables the Linux verifier reads.
fn set_env(file: Option<&Path>, dir: Option<&Path>) {
    match file {
        Some(f) => std::env::set_var("SSL_CERT_FILE", f),
        None => std::env::remove_var("SSL_CERT_FILE"),
    }
    match dir {
        Some(d) => std::env::set_var("SSL_CERT_DIR", d),
        None => std::env::remove_var("SSL_CERT_DIR"),
    }
}

/// What the message of a refused certificate says to do.
const ADVICE: &[&str] = &["platform verifier", "SSL_CERT_FILE", "TlsOptions::ca_file"];

/// The error a connect to `url` with the platform verifier fails with,
/// which must be a refused server certificate whose message says what to
/// do.
fn refused(case: &str, url: &str, needle: &str, advice: &[&str]) -> Error {
    let mut c = Client::with_options(url, platform())
        .unwrap_or_else(|e| panic!("{case}: Client::with_options: {e}"));
    let p = c.handshake();
    let e = match c.wait_timeout(p, W) {
        Ok(()) => panic!("{case}: connected, but the certificate must be refused"),
        Err(e) => e,
    };
    eprintln!("{case}: {e}");
    match &e {
        Error::Tls(t) if t.kind == TlsErrorKind::ServerCertificate => {}
        e => panic!("{case}: not a server certificate error: {e:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(needle), "{case}: {msg} lacks {needle:?}");
    // What to do about it.
    for advice in advice {
        assert!(msg.contains(advice), "{case}: {msg} lacks {advice:?}");
    }
    assert!(e.is_connection_error());
    assert!(!c.is_open());
    e
}

/// Connects with the platform verifier and gets a message back.
fn roundtrip(case: &str) {
    let mut c = Client::with_options(URL, platform())
        .unwrap_or_else(|e| panic!("{case}: Client::with_options: {e}"));
    let p = c.handshake();
    c.wait_timeout(p, W)
        .unwrap_or_else(|e| panic!("{case}: connect: {e} ({e:?})"));
    assert!(c.params().tls);
    let q = common::unique("tls-platform");
    let p = c.queue_declare(QueueDeclare::named(&q).exclusive());
    c.wait_timeout(p, W).expect("queue_declare");
    let body = format!("verified by the platform ({case})");
    let p = c.basic_publish("", &q, body.as_bytes());
    c.wait_timeout(p, W).expect("basic_publish");
    let p = c.basic_get(&q);
    let d = c
        .wait_timeout(p, W)
        .expect("basic_get")
        .expect("the message is in the queue");
    assert_eq!(&d.body[..], body.as_bytes(), "{case}");
    c.basic_ack(&d).expect("ack");
    let p = c.close();
    c.wait_timeout(p, W).expect("close");
}

#[test]
fn platform_verifier() {
    common::run_node_script("tls-broker").unwrap_or_else(|e| panic!("{e}"));
    let saved = (
        std::env::var_os("SSL_CERT_FILE"),
        std::env::var_os("SSL_CERT_DIR"),
    );

    // 1. The system's store, which does not hold the test CA.
    set_env(None, None);
    match Client::with_options(URL, platform()) {
        Err(Error::Config(m)) => panic!(
            "the platform verifier found no system CA certificates ({m}); \
             this test needs the system's CA bundle (Debian: apt-get install ca-certificates)"
        ),
        other => drop(other),
    }
    refused("system store", URL, "UnknownIssuer", ADVICE);

    // 2. SSL_CERT_FILE replaces the system's store: another CA is refused...
    set_env(Some(&cert("wrong-ca.pem")), None);
    refused("SSL_CERT_FILE=wrong-ca.pem", URL, "UnknownIssuer", ADVICE);

    // 3. ...and the test CA is trusted, by name or by address.
    set_env(Some(&cert("ca.pem")), None);
    roundtrip("SSL_CERT_FILE=ca.pem");
    // The platform's trust does not turn off the name check.
    refused(
        "SSL_CERT_FILE=ca.pem, a name not in the certificate",
        "amqps://guest:guest@127.0.0.1:5671/%2f?server_name_indication=wrong.example",
        "not valid for name",
        &["server_name_indication"],
    );

    // 4. SSL_CERT_DIR: a directory of PEM files.
    let dir = std::env::temp_dir().join(format!("puka-tls-platform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(cert("ca.pem"), dir.join("ca.pem")).expect("copy ca.pem");
    set_env(None, Some(&dir));
    roundtrip("SSL_CERT_DIR with ca.pem");

    // 5. A store with no certificate at all: a configuration error when the
    // client is made, not a refused handshake later.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").expect("write empty.pem");
    set_env(Some(&empty), None);
    match Client::with_options(URL, platform()) {
        Err(Error::Config(m)) => {
            eprintln!("empty SSL_CERT_FILE: {m}");
            assert!(m.contains("platform verifier"), "{m}");
        }
        Err(e) => panic!("empty SSL_CERT_FILE: {e:?}"),
        Ok(_) => panic!("empty SSL_CERT_FILE: the client was made"),
    }
    let _ = std::fs::remove_dir_all(&dir);

    match saved.0 {
        Some(v) => std::env::set_var("SSL_CERT_FILE", v),
        None => std::env::remove_var("SSL_CERT_FILE"),
    }
    match saved.1 {
        Some(v) => std::env::set_var("SSL_CERT_DIR", v),
        None => std::env::remove_var("SSL_CERT_DIR"),
    }
}
