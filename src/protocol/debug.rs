//! `Debug` for [`Connection`]: its state and buffer sizes, never the
//! buffers' contents (the queued `connection.start-ok` holds the password)
//! nor the [`Config`](super::Config) secret.

use super::Connection;
use std::fmt;

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("tuned", &self.tuned)
            .field("read_buf_len", &self.read_buf.len())
            .field("read_buf_capacity", &self.read_buf.capacity())
            .field("write_buf_len", &self.write_buf.len())
            .field("deferred_len", &self.deferred.len())
            .field("written_total", &self.written_total)
            .field("events", &self.events.len())
            .field("open_channels", &self.open_channels())
            .field("confirm", &self.confirm)
            .field("blocked", &self.blocked)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Connection};
    use crate::codec::frame::encode_method;
    use crate::codec::method::{ConnectionSecureOk, ConnectionStart, ConnectionStartOk};
    use crate::codec::method::{ConnectionUpdateSecret, Method};
    use crate::codec::FieldTable;
    use bytes::{Bytes, BytesMut};
    use std::time::Instant;

    const SECRET: &str = "s3cr3t-pw";

    fn start() -> Method {
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::new(),
            mechanisms: Bytes::from_static(b"PLAIN"),
            locales: Bytes::from_static(b"en_US"),
        })
    }

    #[test]
    fn connection_debug_never_shows_the_queued_start_ok() {
        let config = Config {
            password: SECRET.into(),
            ..Config::default()
        };
        let now = Instant::now();
        let mut conn = Connection::new(config, 1, now);
        let mut input = BytesMut::new();
        encode_method(&mut input, 0, &start()).unwrap();
        conn.handle_bytes(&input);
        conn.handle_input(now);
        // start-ok, with the password, waits in the write buffer.
        assert!(conn
            .write_buf
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes()));
        for shown in [format!("{conn:?}"), format!("{conn:#?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("write_buf_len"), "{shown}");
        }
    }

    #[test]
    fn config_debug_hides_the_password() {
        let config = Config {
            password: SECRET.into(),
            ..Config::default()
        };
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }

    #[test]
    fn secret_method_fields_are_redacted() {
        let response = Bytes::from(format!("\0guest\0{SECRET}"));
        let methods = [
            Method::from(ConnectionStartOk {
                client_properties: FieldTable::new(),
                mechanism: "PLAIN".into(),
                response: response.clone(),
                locale: "en_US".into(),
            }),
            Method::from(ConnectionSecureOk {
                response: response.clone(),
            }),
            Method::from(ConnectionUpdateSecret {
                new_secret: response,
                reason: "refresh".into(),
            }),
        ];
        for m in &methods {
            for shown in [format!("{m:?}"), format!("{m:#?}")] {
                assert!(!shown.contains("s3cr3t"), "{shown}");
            }
        }
    }
}
