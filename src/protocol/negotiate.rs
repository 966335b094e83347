//! Connection negotiation: what the client says in `connection.start-ok` and
//! how the `connection.tune` values are agreed.

use crate::codec::{FieldTable, FieldValue, FRAME_MIN_SIZE};
use crate::error::Error;
use crate::protocol::Mechanism;
use crate::url::UrlError;

/// The values both peers use after `connection.tune-ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tuned {
    /// Highest channel number usable (at least 1).
    pub channel_max: u16,
    /// Largest frame, header and frame end included (at least 4096).
    pub frame_max: u32,
    /// Heartbeat interval in seconds (0 = off).
    pub heartbeat: u16,
}

/// The client's own limits when the user sets none.
pub const DEFAULT_CHANNEL_MAX: u16 = 2047;
/// The client's default `frame_max` (RabbitMQ's own default).
pub const DEFAULT_FRAME_MAX: u32 = 131_072;
/// The largest `frame_max` the client ever offers, 1 MiB, whatever it is
/// asked for: a frame is buffered whole before it is handled, so this bounds
/// the memory one frame can take. Larger frames bring nothing (bodies are
/// split across frames anyway); RabbitMQ's default is 128 KiB.
pub const MAX_FRAME_MAX: u32 = 1 << 20;

/// Agrees one limit where 0 means "no limit": the smaller of the two limits
/// that are set.
fn lower_limit<T: Ord + Copy + Default>(client: T, server: T) -> T {
    let zero = T::default();
    if client == zero {
        server
    } else if server == zero {
        client
    } else {
        client.min(server)
    }
}

/// Agrees the tune values from the server's proposal and the client's wishes.
///
/// The agreed `frame_max` is at most the client's wish, which is at most
/// [`MAX_FRAME_MAX`] (a larger wish is lowered to it).
///
/// # Errors
/// [`Error::BadTune`] when the server proposes a `frame_max` below the spec's
/// minimum of 4096.
pub fn tune(
    server_channel_max: u16,
    server_frame_max: u32,
    server_heartbeat: u16,
    client_channel_max: Option<u16>,
    client_frame_max: Option<u32>,
    client_heartbeat: Option<u16>,
) -> Result<Tuned, Error> {
    // "frame-max: ... MUST NOT be lower than frame-min-size" (0 = no limit).
    if server_frame_max != 0 && server_frame_max < FRAME_MIN_SIZE {
        return Err(Error::BadTune("frame_max below 4096"));
    }
    let mut channel_max = lower_limit(
        client_channel_max.unwrap_or(DEFAULT_CHANNEL_MAX),
        server_channel_max,
    );
    if channel_max == 0 {
        channel_max = u16::MAX;
    }
    let client_frame = match client_frame_max {
        Some(f) if f != 0 => f.clamp(FRAME_MIN_SIZE, MAX_FRAME_MAX),
        _ => DEFAULT_FRAME_MAX,
    };
    let frame_max = lower_limit(client_frame, server_frame_max);
    // No preference takes the broker's value. `heartbeat=0` turns them off,
    // as in other clients' URLs: 0 in tune-ok means no heartbeats (RabbitMQ
    // honours it); else the smaller of the two (0 from the broker: ours).
    let heartbeat = match client_heartbeat {
        None => server_heartbeat,
        Some(0) => 0,
        Some(c) => lower_limit(c, server_heartbeat),
    };
    Ok(Tuned {
        channel_max,
        frame_max,
        heartbeat,
    })
}

/// The `client_properties` table sent in `connection.start-ok`, with the
/// capabilities this client implements, merged with the user's entries.
pub fn client_properties(user: &FieldTable) -> FieldTable {
    let capabilities = FieldTable::from([
        ("publisher_confirms", FieldValue::from(true)),
        ("exchange_exchange_bindings", FieldValue::from(true)),
        ("basic.nack", FieldValue::from(true)),
        ("consumer_cancel_notify", FieldValue::from(true)),
        ("connection.blocked", FieldValue::from(true)),
        ("authentication_failure_close", FieldValue::from(true)),
        ("per_consumer_qos", FieldValue::from(true)),
    ]);
    let mut props = FieldTable::from([
        ("product", FieldValue::from("puka (rust)")),
        ("version", FieldValue::from(env!("CARGO_PKG_VERSION"))),
        ("platform", FieldValue::from("Rust")),
        (
            "information",
            FieldValue::from("https://crates.io/crates/puka"),
        ),
        ("capabilities", FieldValue::from(capabilities)),
    ]);
    for (k, v) in user.iter() {
        props.insert(k.clone(), v.clone());
    }
    props
}

/// The mechanism an `auth_mechanism` name (uppercase, as
/// [`ConnectionParams`](crate::url::ConnectionParams) holds it) selects;
/// `None` is PLAIN.
///
/// # Errors
/// [`UrlError::UnsupportedAuthMechanism`]
/// for any other name: never a silent fall back to PLAIN.
pub fn mechanism(name: Option<&str>) -> Result<Mechanism, Error> {
    match name {
        None | Some("PLAIN") => Ok(Mechanism::Plain),
        Some("EXTERNAL") => Ok(Mechanism::External),
        Some(other) => Err(UrlError::UnsupportedAuthMechanism(other.to_owned()).into()),
    }
}

/// The PLAIN mechanism's response: `\0user\0password`.
pub fn plain_response(user: &str, password: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(user.len() + password.len() + 2);
    r.push(0);
    r.extend_from_slice(user.as_bytes());
    r.push(0);
    r.extend_from_slice(password.as_bytes());
    r
}

/// Whether a space-separated mechanism list offers `name`.
pub fn offers(mechanisms: &[u8], name: &str) -> bool {
    mechanisms
        .split(|b| *b == b' ')
        .any(|m| m.eq_ignore_ascii_case(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_map_or_fail() {
        assert_eq!(mechanism(None).unwrap(), Mechanism::Plain);
        assert_eq!(mechanism(Some("PLAIN")).unwrap(), Mechanism::Plain);
        assert_eq!(mechanism(Some("EXTERNAL")).unwrap(), Mechanism::External);
        for name in ["SCRAM-SHA-256", "AMQPLAIN", "plain", ""] {
            assert!(
                matches!(
                    mechanism(Some(name)),
                    Err(Error::Url(UrlError::UnsupportedAuthMechanism(n))) if n == name
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn tune_takes_the_smaller_nonzero_limits() {
        let t = tune(2047, 131072, 60, None, None, None).unwrap();
        assert_eq!(
            t,
            Tuned {
                channel_max: 2047,
                frame_max: 131072,
                heartbeat: 60
            }
        );
        let t = tune(0, 0, 0, Some(10), Some(8192), Some(5)).unwrap();
        assert_eq!((t.channel_max, t.frame_max, t.heartbeat), (10, 8192, 5));
        let t = tune(100, 65536, 60, Some(0), Some(0), None).unwrap();
        assert_eq!((t.channel_max, t.frame_max, t.heartbeat), (100, 65536, 60));
        // heartbeat=0 in the URL: none, whatever the broker proposes.
        let t = tune(100, 65536, 60, Some(0), Some(0), Some(0)).unwrap();
        assert_eq!(t.heartbeat, 0);
        let t = tune(0, 0, 10, None, Some(1_000_000), Some(30)).unwrap();
        assert_eq!(
            (t.channel_max, t.frame_max, t.heartbeat),
            (2047, 1_000_000, 10)
        );
    }

    #[test]
    fn tune_never_yields_zero_or_above_server() {
        for server_frame in [0u32, 4096, 10_000, 131_072, u32::MAX] {
            for client_frame in [None, Some(0), Some(1), Some(4096), Some(200_000)] {
                let t = tune(0, server_frame, 0, Some(0), client_frame, None).unwrap();
                assert!(t.frame_max >= 4096);
                assert!(server_frame == 0 || t.frame_max <= server_frame);
                assert!(t.channel_max > 0);
            }
        }
    }

    #[test]
    fn tune_refuses_small_frame_max() {
        assert!(matches!(
            tune(0, 4095, 0, None, None, None),
            Err(Error::BadTune(_))
        ));
        assert!(matches!(
            tune(0, 1, 0, None, None, None),
            Err(Error::BadTune(_))
        ));
    }

    #[test]
    fn plain_and_mechanisms() {
        assert_eq!(plain_response("guest", "pw"), b"\0guest\0pw");
        assert!(offers(b"AMQPLAIN PLAIN", "PLAIN"));
        assert!(!offers(b"AMQPLAIN", "PLAIN"));
    }
}
