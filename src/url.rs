//! AMQP URIs: `amqp://user:password@host:port/vhost?heartbeat=30`.
//!
//! [`ConnectionParams::parse`] follows RabbitMQ's
//! [URI specification](https://www.rabbitmq.com/docs/uri-spec) and reads the
//! [query parameters](https://www.rabbitmq.com/docs/uri-query-parameters) this
//! client can use. Components absent from the URI take the defaults of a local
//! development broker: host `localhost`, user `guest`, password `guest` and
//! vhost `/`.
//!
//! A URI may name several brokers, `amqp://user:pass@h1:5672,h2:5673/vhost`:
//! [`ConnectionParams::parse_hosts`] reads it as one `ConnectionParams` per
//! host, and [`Client::new`](crate::Client::new) tries them in turn.
//!
//! The password is a secret: neither [`UrlError`] messages nor the `Debug` and
//! `Display` forms of [`ConnectionParams`] ever contain it.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::Duration;

/// Port used by the `amqp` scheme when the URI gives none.
pub const DEFAULT_PORT: u16 = 5672;
/// Port used by the `amqps` scheme when the URI gives none.
pub const DEFAULT_TLS_PORT: u16 = 5671;

/// The smallest `frame_max` AMQP 0-9-1 allows a peer to ask for (its
/// `frame-min-size`), other than 0 for "no limit".
const FRAME_MIN_SIZE: u32 = 4096;
/// What `Display` and `Debug` show instead of the password.
const REDACTED: &str = "***";

/// Everything that can be wrong with an AMQP URI.
///
/// No message contains the password, nor any text that could be part of it:
/// a password with an unencoded `/`, `?` or `#` ends the authority early and
/// lands where a port, vhost or fragment is expected, so those errors do not
/// echo what they found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URI does not start with a scheme such as `amqp:`.
    #[error("missing or malformed scheme (expected amqp:// or amqps://)")]
    MissingScheme,
    /// The scheme is neither `amqp` nor `amqps` (the scheme, lowercased).
    #[error("unsupported scheme {0:?} (expected amqp or amqps)")]
    UnsupportedScheme(String),
    /// The scheme is not followed by `//`.
    #[error("expected \"//\" after the scheme")]
    MissingAuthority,
    /// The URI contains a control character (such as a newline) inside it.
    #[error("control character in url")]
    ControlCharacter,
    /// The URI has a `#fragment`, which AMQP URIs do not allow (a `#` in a
    /// password must be written `%23`).
    #[error("fragment not allowed in an amqp url (encode '#' as %23)")]
    UnexpectedFragment,
    /// The host contains characters a host name cannot, or a bracketed IPv6
    /// literal is malformed.
    #[error("invalid host")]
    InvalidHost,
    /// The port is not a number from 1 to 65535. The text found is not
    /// echoed: when a password contains an unencoded `/`, part of it ends up
    /// where the port is expected.
    #[error("invalid port (expected a number from 1 to 65535)")]
    InvalidPort,
    /// A `%` not followed by two hex digits, in the named component.
    #[error("invalid percent-encoding in {component}")]
    InvalidPercentEncoding {
        /// Which part of the URI: `"username"`, `"password"`, `"host"`,
        /// `"vhost"` or `"query"`.
        component: &'static str,
    },
    /// Percent-decoding the named component produced bytes that are not UTF-8.
    #[error("percent-encoded {component} is not valid utf-8")]
    InvalidUtf8 {
        /// Which part of the URI: `"username"`, `"password"`, `"host"`,
        /// `"vhost"` or `"query"`.
        component: &'static str,
    },
    /// The path has more than one segment: a `/` inside a vhost name must be
    /// written `%2f`.
    #[error("vhost must be a single path segment (encode '/' as %2f)")]
    InvalidVhost,
    /// A query parameter this client reads has a value it cannot use.
    #[error("invalid value {value:?} for query parameter {name:?}")]
    InvalidParameter {
        /// The parameter's name, e.g. `"heartbeat"`.
        name: String,
        /// The value found, percent-decoded.
        value: String,
    },
    /// `auth_mechanism` names a SASL mechanism this client does not
    /// implement (it has `PLAIN` and `EXTERNAL`); the name, uppercased.
    /// Connecting with another mechanism, such as PLAIN, instead would send
    /// the password in a way the user did not choose.
    #[error("unsupported authentication mechanism {0:?} (supported: PLAIN, EXTERNAL)")]
    UnsupportedAuthMechanism(String),
    /// The URI names several hosts (`amqp://h1,h2/`) where one is expected:
    /// read it with [`ConnectionParams::parse_hosts`] (as
    /// [`Client::new`](crate::Client::new) does).
    #[error("several hosts in the url (use ConnectionParams::parse_hosts)")]
    MultipleHosts,
    /// Broker addresses given together disagree on something other than
    /// host, port and `server_name_indication` (user, password, vhost,
    /// scheme, a query parameter); the position of the first that differs
    /// from the first address.
    #[error("address {0} differs from the first in more than host, port and server name")]
    InconsistentAddresses(usize),
    /// No broker address was given.
    #[error("no broker address given")]
    NoAddress,
}

/// The SASL mechanisms this client implements, as `auth_mechanism` names them.
pub const SUPPORTED_AUTH_MECHANISMS: [&str; 2] = ["PLAIN", "EXTERNAL"];

/// Where and how to connect to a RabbitMQ node: what an AMQP URI says.
///
/// Build one by parsing a URI ([`ConnectionParams::parse`] or [`str::parse`]),
/// or start from [`ConnectionParams::default`] (`amqp://guest:guest@localhost:5672/`,
/// vhost `/`) and set fields. The password is private so that it can only be
/// read on purpose, through [`ConnectionParams::password`]; `Debug` and
/// `Display` show `***` in its place.
///
/// # Query parameters
///
/// | parameter                | field                | value |
/// |--------------------------|----------------------|-------|
/// | `heartbeat`              | [`heartbeat`]        | seconds, `0` disables heartbeats |
/// | `frame_max`              | [`frame_max`]        | bytes, `0` (no limit) or at least 4096; offered at most 1 MiB |
/// | `channel_max`            | [`channel_max`]      | `0` (no limit) or a channel count |
/// | `connection_timeout`     | [`connection_timeout`] | milliseconds, at least 1 |
/// | `auth_mechanism`         | [`auth_mechanism`]   | SASL mechanism(s): `plain` or `external` first |
/// | `server_name_indication` | [`server_name`]      | host name to send in the TLS handshake |
///
/// Other parameters (such as the TLS file options of RabbitMQ's Erlang
/// client) are ignored. A known parameter with a value that cannot be used is
/// an error. When a parameter is repeated the last value wins, except
/// `auth_mechanism`, whose values are preferences in order (the first wins).
///
/// [`heartbeat`]: ConnectionParams::heartbeat
/// [`frame_max`]: ConnectionParams::frame_max
/// [`channel_max`]: ConnectionParams::channel_max
/// [`connection_timeout`]: ConnectionParams::connection_timeout
/// [`auth_mechanism`]: ConnectionParams::auth_mechanism
/// [`server_name`]: ConnectionParams::server_name
///
/// # Example
///
/// ```
/// use puka::ConnectionParams;
///
/// let params: ConnectionParams =
///     "amqps://app:s3cr3t@rabbit.example.com/orders?heartbeat=30".parse()?;
/// assert!(params.tls);
/// assert_eq!(params.host, "rabbit.example.com");
/// assert_eq!(params.port, 5671);
/// assert_eq!(params.username, "app");
/// assert_eq!(params.password(), "s3cr3t");
/// assert_eq!(params.vhost, "orders");
/// assert_eq!(params.heartbeat, Some(30));
/// assert_eq!(params.addr_string(), "rabbit.example.com:5671");
///
/// // The password never shows in printed forms.
/// assert_eq!(
///     params.to_string(),
///     "amqps://app:***@rabbit.example.com:5671/orders?heartbeat=30"
/// );
/// assert!(!format!("{params:?}").contains("s3cr3t"));
/// # Ok::<(), puka::UrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionParams {
    /// Whether to speak TLS (the `amqps` scheme).
    pub tls: bool,
    /// Host name or IP address to connect to; an IPv6 address is stored
    /// without brackets (`::1`). See [`ConnectionParams::addr_string`].
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name for authentication.
    pub username: String,
    /// Password for authentication (read it with [`ConnectionParams::password`]).
    password: String,
    /// Virtual host to open. The URI spec distinguishes an absent vhost
    /// (`amqp://host`, meaning the default `/`) from an empty one
    /// (`amqp://host/`, the vhost named `""`).
    pub vhost: String,
    /// Heartbeat interval to ask for, in seconds; `None` accepts the server's
    /// proposal, `Some(0)` asks for no heartbeats.
    pub heartbeat: Option<u16>,
    /// Largest frame to ask for, in bytes; `None` accepts the server's
    /// proposal. `Some(0)` means no limit is requested, so the server's
    /// proposal applies; any other value is at least 4096.
    ///
    /// The client never offers more than 1 MiB
    /// ([`MAX_FRAME_MAX`](crate::MAX_FRAME_MAX)): a
    /// larger value is lowered to it, since every frame is buffered whole
    /// before it is handled. Without a limit from either side, 128 KiB.
    pub frame_max: Option<u32>,
    /// Most channels to ask for; `None` or `Some(0)` (no limit requested)
    /// accepts the server's proposal.
    pub channel_max: Option<u16>,
    /// How long the AMQP handshake may take once a TCP connection is made
    /// (the [`Client`](crate::Client) counts it again for each address it
    /// reaches; `None`: 30 s). Each TCP connect is bounded by
    /// `Options::connect_timeout`, and by this when it is shorter.
    pub connection_timeout: Option<Duration>,
    /// SASL mechanism to authenticate with, uppercase (e.g. `"EXTERNAL"`);
    /// `None` lets the client choose (`PLAIN` with username and password).
    /// Only the [`SUPPORTED_AUTH_MECHANISMS`] can be used: parsing refuses
    /// others, and so does [`Client::from_params`](crate::Client::from_params)
    /// when this field was set by hand, both with
    /// [`UrlError::UnsupportedAuthMechanism`].
    pub auth_mechanism: Option<String>,
    /// Server name to present in the TLS handshake (SNI) and to verify the
    /// certificate against, instead of [`host`](ConnectionParams::host).
    /// For `amqps://` it (else the host) must be a DNS name or an IP
    /// address: [`Client::new`](crate::Client::new) fails with
    /// [`Error::Config`](crate::Error::Config) otherwise.
    pub server_name: Option<String>,
}

impl ConnectionParams {
    /// Parses an `amqp://` or `amqps://` URI.
    ///
    /// Leading and trailing whitespace is ignored. The user name, password,
    /// host and vhost are percent-decoded and must decode to UTF-8. Absent
    /// components take defaults: host `localhost`, port 5672 (`amqp`) or 5671
    /// (`amqps`), user `guest` with password `guest`, and vhost `/`. A user
    /// given without a password (`amqp://user@host`) gets an empty password.
    /// See the type's documentation for the query parameters read.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] describing the first problem found; it never contains
    /// the password.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let mut all = ConnectionParams::parse_hosts(url)?;
        if all.len() > 1 {
            return Err(UrlError::MultipleHosts);
        }
        Ok(all.remove(0))
    }

    /// Parses an `amqp://` or `amqps://` URI that may name several hosts,
    /// separated by commas: `amqp://user:pass@h1:5672,h2:5673,[::1]/vhost`.
    /// Returns one `ConnectionParams` per host, in the order written, that
    /// differ only in [`host`](ConnectionParams::host) and
    /// [`port`](ConnectionParams::port); a host without a port gets the
    /// scheme's default. A URI with one host gives one element, exactly
    /// what [`ConnectionParams::parse`] returns.
    ///
    /// ```
    /// use puka::ConnectionParams;
    ///
    /// let all = ConnectionParams::parse_hosts("amqp://app:pw@h1:5673,h2/orders")?;
    /// assert_eq!(all.len(), 2);
    /// assert_eq!(all[0].addr_string(), "h1:5673");
    /// assert_eq!(all[1].addr_string(), "h2:5672");
    /// assert!(all.iter().all(|p| p.vhost == "orders" && p.password() == "pw"));
    /// # Ok::<(), puka::UrlError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ConnectionParams::parse`]; an empty entry in the host list
    /// (`amqp://h1,,h2`) is [`UrlError::InvalidHost`].
    pub fn parse_hosts(url: &str) -> Result<Vec<Self>, UrlError> {
        let url = url.trim_matches(|c: char| c.is_whitespace() || c.is_control());
        if url.chars().any(char::is_control) {
            return Err(UrlError::ControlCharacter);
        }

        let (scheme, rest) = url.split_once(':').ok_or(UrlError::MissingScheme)?;
        if !is_scheme(scheme) {
            return Err(UrlError::MissingScheme);
        }
        let scheme = scheme.to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "amqp" => false,
            "amqps" => true,
            _ => return Err(UrlError::UnsupportedScheme(scheme)),
        };
        let rest = rest.strip_prefix("//").ok_or(UrlError::MissingAuthority)?;
        if rest.contains('#') {
            return Err(UrlError::UnexpectedFragment);
        }

        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };

        let mut params = ConnectionParams {
            tls,
            port: if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT },
            ..ConnectionParams::default()
        };

        // The last '@' ends the userinfo, so an unencoded '@' in a password
        // still parses.
        let host_port = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, password),
                    None => (userinfo, ""),
                };
                params.username = percent_decode(user, "username")?;
                params.password = percent_decode(password, "password")?;
                host_port
            }
            None => authority,
        };

        let entries: Vec<&str> = host_port.split(',').collect();
        let mut hosts = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (host, port) = split_host_port(entry)?;
            if host.is_empty() && entries.len() > 1 {
                return Err(UrlError::InvalidHost);
            }
            let port = match port.filter(|port| !port.is_empty()) {
                Some(port) => parse_port(port)?,
                None => params.port,
            };
            hosts.push((host, port));
        }

        if let Some(path) = path {
            if path.contains('/') {
                return Err(UrlError::InvalidVhost);
            }
            params.vhost = percent_decode(path, "vhost")?;
        }

        if let Some(query) = query {
            params.apply_query(query)?;
        }
        Ok(hosts
            .into_iter()
            .map(|(host, port)| {
                let mut p = params.clone();
                if !host.is_empty() {
                    p.host = host;
                }
                p.port = port;
                p
            })
            .collect())
    }

    /// Whether `self` and `other` agree on everything but the address:
    /// [`host`](ConnectionParams::host), [`port`](ConnectionParams::port)
    /// and [`server_name`](ConnectionParams::server_name) may differ.
    pub fn same_but_address(&self, other: &ConnectionParams) -> bool {
        let mut other = other.clone();
        other.host.clone_from(&self.host);
        other.port = self.port;
        other.server_name.clone_from(&self.server_name);
        *self == other
    }

    /// The password for authentication.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Replaces the password.
    pub fn set_password(&mut self, password: impl Into<String>) {
        self.password = password.into();
    }

    /// `host:port`, with an IPv6 address in brackets (`[::1]:5672`), as
    /// [`std::net::ToSocketAddrs`] expects.
    pub fn addr_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn apply_query(&mut self, query: &str) -> Result<(), UrlError> {
        let mut auth_mechanism_seen = false;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name, "query")?;
            let value = percent_decode(value, "query")?;
            let invalid = || UrlError::InvalidParameter {
                name: name.clone(),
                value: value.clone(),
            };
            match name.as_str() {
                "heartbeat" => {
                    self.heartbeat = Some(parse_decimal(&value).ok_or_else(invalid)?);
                }
                "frame_max" => {
                    let frame_max: u32 = parse_decimal(&value).ok_or_else(invalid)?;
                    if frame_max != 0 && frame_max < FRAME_MIN_SIZE {
                        return Err(invalid());
                    }
                    self.frame_max = Some(frame_max);
                }
                "channel_max" => {
                    self.channel_max = Some(parse_decimal(&value).ok_or_else(invalid)?);
                }
                "connection_timeout" => {
                    let millis: u64 = parse_decimal(&value).ok_or_else(invalid)?;
                    if millis == 0 {
                        return Err(invalid());
                    }
                    self.connection_timeout = Some(Duration::from_millis(millis));
                }
                "auth_mechanism" => {
                    let first = value.split(',').next().unwrap_or("").trim();
                    if !is_sasl_mechanism(first) {
                        return Err(invalid());
                    }
                    if !auth_mechanism_seen {
                        let mechanism = first.to_ascii_uppercase();
                        if !SUPPORTED_AUTH_MECHANISMS.contains(&mechanism.as_str()) {
                            return Err(UrlError::UnsupportedAuthMechanism(mechanism));
                        }
                        self.auth_mechanism = Some(mechanism);
                        auth_mechanism_seen = true;
                    }
                }
                "server_name_indication" => {
                    if value.is_empty() || !is_host_text(&value) {
                        return Err(invalid());
                    }
                    self.server_name = Some(value);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Default for ConnectionParams {
    /// `amqp://guest:guest@localhost:5672/`, vhost `/`, everything else left
    /// to the server.
    fn default() -> Self {
        ConnectionParams {
            tls: false,
            host: "localhost".to_owned(),
            port: DEFAULT_PORT,
            username: "guest".to_owned(),
            password: "guest".to_owned(),
            vhost: "/".to_owned(),
            heartbeat: None,
            frame_max: None,
            channel_max: None,
            connection_timeout: None,
            auth_mechanism: None,
            server_name: None,
        }
    }
}

impl FromStr for ConnectionParams {
    type Err = UrlError;

    /// Same as [`ConnectionParams::parse`].
    fn from_str(url: &str) -> Result<Self, UrlError> {
        ConnectionParams::parse(url)
    }
}

impl fmt::Debug for ConnectionParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionParams")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("vhost", &self.vhost)
            .field("heartbeat", &self.heartbeat)
            .field("frame_max", &self.frame_max)
            .field("channel_max", &self.channel_max)
            .field("connection_timeout", &self.connection_timeout)
            .field("auth_mechanism", &self.auth_mechanism)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl fmt::Display for ConnectionParams {
    /// The parameters as a URI with the password replaced by `***`, e.g.
    /// `amqp://guest:***@localhost:5672/%2f`. Port and vhost are always
    /// written; query parameters only for the options that are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        write!(f, "{scheme}://{}:{REDACTED}@", Encoded(&self.username))?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", Encoded(&self.host))?;
        }
        write!(f, ":{}/{}", self.port, Encoded(&self.vhost))?;

        let mut separator = '?';
        let mut param = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let result = write!(f, "{separator}{name}={value}");
            separator = '&';
            result
        };
        if let Some(heartbeat) = self.heartbeat {
            param(f, "heartbeat", &heartbeat)?;
        }
        if let Some(frame_max) = self.frame_max {
            param(f, "frame_max", &frame_max)?;
        }
        if let Some(channel_max) = self.channel_max {
            param(f, "channel_max", &channel_max)?;
        }
        if let Some(timeout) = self.connection_timeout {
            param(f, "connection_timeout", &timeout.as_millis())?;
        }
        if let Some(mechanism) = &self.auth_mechanism {
            param(f, "auth_mechanism", &Encoded(mechanism))?;
        }
        if let Some(server_name) = &self.server_name {
            param(f, "server_name_indication", &Encoded(server_name))?;
        }
        Ok(())
    }
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `sub-delims`.
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Whether a decoded host name (or SNI name) is usable: no whitespace,
/// controls, or characters that would change the meaning of `host:port`.
fn is_host_text(s: &str) -> bool {
    !s.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '/' | '?' | '#' | '@' | '[' | ']' | ':' | '%' | '\\')
    })
}

/// SASL mechanism names: 1 to 20 characters from `A-Z 0-9 - _` (RFC 4422),
/// accepted here in either case.
fn is_sasl_mechanism(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits `host[:port]` or `[v6]:port`, validating and decoding the host.
/// The port is returned as written.
fn split_host_port(s: &str) -> Result<(String, Option<&str>), UrlError> {
    if let Some(after) = s.strip_prefix('[') {
        let (literal, tail) = after.split_once(']').ok_or(UrlError::InvalidHost)?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::InvalidHost);
        }
        let port = if tail.is_empty() {
            None
        } else {
            Some(tail.strip_prefix(':').ok_or(UrlError::InvalidHost)?)
        };
        return Ok((literal.to_owned(), port));
    }

    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    if !host
        .bytes()
        .all(|b| is_unreserved(b) || is_sub_delim(b) || b == b'%')
    {
        return Err(UrlError::InvalidHost);
    }
    let host = percent_decode(host, "host")?;
    if !is_host_text(&host) {
        return Err(UrlError::InvalidHost);
    }
    Ok((host, port))
}

fn parse_port(s: &str) -> Result<u16, UrlError> {
    match parse_decimal::<u16>(s) {
        Some(port) if port != 0 => Ok(port),
        _ => Err(UrlError::InvalidPort),
    }
}

/// Parses a plain decimal number: ASCII digits only (no sign, no spaces).
fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decodes `%XX` escapes; every `%` must start a valid escape and the result
/// must be UTF-8. Errors name the component, never its text.
fn percent_decode(s: &str, component: &'static str) -> Result<String, UrlError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(UrlError::InvalidPercentEncoding { component }),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::InvalidUtf8 { component })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Displays a string percent-encoded: everything but RFC 3986 `unreserved`
/// characters is escaped, with lowercase hex as RabbitMQ writes `%2f`.
struct Encoded<'a>(&'a str);

impl fmt::Display for Encoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.as_bytes() {
            if is_unreserved(b) {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "%{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ConnectionParams {
        match ConnectionParams::parse(url) {
            Ok(params) => params,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn err(url: &str) -> UrlError {
        match ConnectionParams::parse(url) {
            Ok(params) => panic!("{url} parsed as {params:?}"),
            Err(e) => e,
        }
    }

    /// Asserts user, password, host, port and vhost.
    #[track_caller]
    fn check(url: &str, user: &str, password: &str, host: &str, port: u16, vhost: &str) {
        let p = parse(url);
        assert_eq!(
            (
                p.username.as_str(),
                p.password(),
                p.host.as_str(),
                p.port,
                p.vhost.as_str()
            ),
            (user, password, host, port, vhost),
            "{url}"
        );
        assert!(!p.tls, "{url}");
    }

    // The rows of Appendix A of RabbitMQ's URI spec; absent components take
    // the defaults.

    #[test]
    fn spec_full_uri() {
        check(
            "amqp://user:pass@host:10000/vhost",
            "user",
            "pass",
            "host",
            10000,
            "vhost",
        );
    }

    #[test]
    fn spec_percent_encoded_everywhere() {
        check(
            "amqp://user%61:%61pass@ho%61st:10000/v%2fhost",
            "usera",
            "apass",
            "hoast",
            10000,
            "v/host",
        );
    }

    #[test]
    fn spec_everything_absent() {
        check("amqp://", "guest", "guest", "localhost", 5672, "/");
        assert_eq!(parse("amqp://"), ConnectionParams::default());
    }

    #[test]
    fn spec_empty_user_password_and_vhost() {
        check("amqp://:@/", "", "", "localhost", 5672, "");
    }

    #[test]
    fn spec_user_without_password() {
        check("amqp://user@", "user", "", "localhost", 5672, "/");
    }

    #[test]
    fn spec_user_and_password_only() {
        check("amqp://user:pass@", "user", "pass", "localhost", 5672, "/");
    }

    #[test]
    fn spec_host_only() {
        check("amqp://host", "guest", "guest", "host", 5672, "/");
    }

    #[test]
    fn spec_port_only() {
        check("amqp://:10000", "guest", "guest", "localhost", 10000, "/");
    }

    #[test]
    fn spec_vhost_only() {
        check(
            "amqp:///vhost",
            "guest",
            "guest",
            "localhost",
            5672,
            "vhost",
        );
    }

    #[test]
    fn spec_empty_vhost() {
        check("amqp://host/", "guest", "guest", "host", 5672, "");
    }

    #[test]
    fn spec_slash_vhost() {
        check("amqp://host/%2f", "guest", "guest", "host", 5672, "/");
        check("amqp://host/%2F", "guest", "guest", "host", 5672, "/");
    }

    #[test]
    fn spec_ipv6_literal() {
        check("amqp://[::1]", "guest", "guest", "::1", 5672, "/");
    }

    #[test]
    fn ipv6_with_port_and_addr_string() {
        let p = parse("amqp://u:p@[2001:db8::7]:5673/v");
        assert_eq!(p.host, "2001:db8::7");
        assert_eq!(p.port, 5673);
        assert_eq!(p.addr_string(), "[2001:db8::7]:5673");
        assert_eq!(
            parse("amqp://example.com").addr_string(),
            "example.com:5672"
        );
        assert_eq!(parse("amqp://127.0.0.1:1").addr_string(), "127.0.0.1:1");
    }

    #[test]
    fn addr_string_resolves() {
        use std::net::ToSocketAddrs;
        let addrs: Vec<_> = parse("amqp://[::1]:5673")
            .addr_string()
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        assert_eq!(addrs, vec!["[::1]:5673".parse().unwrap()]);
    }

    #[test]
    fn bad_ipv6_literals() {
        for url in [
            "amqp://[::1",
            "amqp://[not-v6]",
            "amqp://[::1]x",
            "amqp://[::1]5672",
            "amqp://[]",
            "amqp://[v1.x]",
            "amqp://[fe80::1%25eth0]",
        ] {
            assert_eq!(err(url), UrlError::InvalidHost, "{url}");
        }
    }

    #[test]
    fn amqps_scheme_and_default_port() {
        let p = parse("amqps://host");
        assert!(p.tls);
        assert_eq!(p.port, 5671);
        let p = parse("amqps://host:5672");
        assert!(p.tls);
        assert_eq!(p.port, 5672);
        assert!(!parse("amqp://host").tls);
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert!(parse("AMQPS://host").tls);
        assert_eq!(parse("Amqp://host").port, 5672);
    }

    #[test]
    fn bad_schemes() {
        assert_eq!(
            err("http://host"),
            UrlError::UnsupportedScheme("http".to_owned())
        );
        assert_eq!(
            err("AMQPX://host"),
            UrlError::UnsupportedScheme("amqpx".to_owned())
        );
        assert_eq!(err(""), UrlError::MissingScheme);
        assert_eq!(err("localhost"), UrlError::MissingScheme);
        assert_eq!(err("://host"), UrlError::MissingScheme);
        assert_eq!(err("1amqp://host"), UrlError::MissingScheme);
        assert_eq!(err("amqp:host"), UrlError::MissingAuthority);
        assert_eq!(err("amqp:/host"), UrlError::MissingAuthority);
        assert_eq!(err("amqp:"), UrlError::MissingAuthority);
    }

    #[test]
    fn bad_ports() {
        for url in [
            "amqp://host:0",
            "amqp://host:70000",
            "amqp://host:65536",
            "amqp://host:abc",
            "amqp://host:+5672",
            "amqp://host:-1",
            "amqp://host: 5672",
            "amqp://host:5672:5672",
            "amqp://host:99999999999999999999999",
        ] {
            assert_eq!(err(url), UrlError::InvalidPort, "{url}");
        }
    }

    #[test]
    fn port_edges() {
        assert_eq!(parse("amqp://host:1").port, 1);
        assert_eq!(parse("amqp://host:65535").port, 65535);
        assert_eq!(parse("amqp://host:05672").port, 5672);
        // RFC 3986: an empty port is the same as an absent one.
        assert_eq!(parse("amqp://host:").port, 5672);
        assert_eq!(parse("amqps://host:").port, 5671);
    }

    #[test]
    fn bad_percent_escapes() {
        let cases = [
            ("amqp://us%zzer@host", "username"),
            ("amqp://user:pa%4@host", "password"),
            ("amqp://user:pass%@host", "password"),
            ("amqp://ho%4st", "host"),
            ("amqp://host/v%2", "vhost"),
            ("amqp://host/v%g0", "vhost"),
            ("amqp://host?heartbeat=%1", "query"),
            ("amqp://host?%zz=1", "query"),
        ];
        for (url, component) in cases {
            assert_eq!(
                err(url),
                UrlError::InvalidPercentEncoding { component },
                "{url}"
            );
        }
        // A multi-byte character cut short by the end of the input.
        assert_eq!(
            err("amqp://host/%e2%82"),
            UrlError::InvalidUtf8 { component: "vhost" }
        );
    }

    #[test]
    fn non_utf8_escapes() {
        assert_eq!(
            err("amqp://user:%ff@host"),
            UrlError::InvalidUtf8 {
                component: "password"
            }
        );
        assert_eq!(
            err("amqp://host/%c3"),
            UrlError::InvalidUtf8 { component: "vhost" }
        );
        // Valid multi-byte UTF-8 decodes.
        assert_eq!(parse("amqp://host/caf%C3%A9").vhost, "café");
        assert_eq!(parse("amqp://host/café").vhost, "café");
    }

    #[test]
    fn vhost_must_be_one_segment() {
        assert_eq!(err("amqp://host/a/b"), UrlError::InvalidVhost);
        assert_eq!(err("amqp://host//"), UrlError::InvalidVhost);
        assert_eq!(parse("amqp://host/a%2Fb").vhost, "a/b");
        assert_eq!(parse("amqp://host/vhost").vhost, "vhost");
    }

    #[test]
    fn several_hosts() {
        let all = ConnectionParams::parse_hosts(
            "amqp://u:p%40ss@h1:5673,h2,[::1]:5674,10.0.0.1/v?heartbeat=7",
        )
        .unwrap();
        let addrs: Vec<String> = all.iter().map(ConnectionParams::addr_string).collect();
        assert_eq!(addrs, ["h1:5673", "h2:5672", "[::1]:5674", "10.0.0.1:5672"]);
        for p in &all {
            assert_eq!((p.username.as_str(), p.password()), ("u", "p@ss"));
            assert_eq!((p.vhost.as_str(), p.heartbeat), ("v", Some(7)));
            assert!(p.same_but_address(&all[0]));
        }
        // amqps gives its default port to each host without one.
        let all = ConnectionParams::parse_hosts("amqps://a,b:1").unwrap();
        assert_eq!((all[0].port, all[1].port), (5671, 1));
        assert!(all.iter().all(|p| p.tls));
        // One host: exactly what parse gives, defaults included.
        for url in ["amqp://", "amqp://h", "amqp://:5673/x", "amqps://u@[::1]"] {
            assert_eq!(
                ConnectionParams::parse_hosts(url).unwrap(),
                vec![parse(url)]
            );
        }
    }

    #[test]
    fn several_hosts_errors() {
        let hosts = |url| ConnectionParams::parse_hosts(url).unwrap_err();
        assert_eq!(err("amqp://h1,h2/"), UrlError::MultipleHosts);
        assert_eq!(hosts("amqp://h1,,h2/"), UrlError::InvalidHost);
        assert_eq!(hosts("amqp://h1,/"), UrlError::InvalidHost);
        assert_eq!(hosts("amqp://,h2/"), UrlError::InvalidHost);
        assert_eq!(hosts("amqp://h1,:5672/"), UrlError::InvalidHost);
        assert_eq!(hosts("amqp://h1,h2:0/"), UrlError::InvalidPort);
        assert_eq!(hosts("amqp://h1,h2:x/"), UrlError::InvalidPort);
        assert_eq!(hosts("amqp://h1,[::1/"), UrlError::InvalidHost);
        assert_eq!(hosts("amqp://h1,h 2/"), UrlError::InvalidHost);
        // A password with a comma is not a host list.
        let all = ConnectionParams::parse_hosts("amqp://u:a,b@h1,h2").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].password(), "a,b");
    }

    #[test]
    fn same_but_address() {
        let a = parse("amqp://u:p@h1:1/v?server_name_indication=a");
        assert!(a.same_but_address(&parse("amqp://u:p@h2:2/v")));
        for other in [
            "amqp://x:p@h1:1/v",
            "amqp://u:q@h1:1/v",
            "amqp://u:p@h1:1/w",
            "amqps://u:p@h1:1/v",
            "amqp://u:p@h1:1/v?heartbeat=1",
        ] {
            assert!(!a.same_but_address(&parse(other)), "{other}");
        }
    }

    #[test]
    fn bad_hosts() {
        for url in [
            "amqp://ho st",
            "amqp://host]",
            "amqp://ho[st",
            "amqp://ho%2fst",
            "amqp://ho%3ast",
            "amqp://ho%20st",
            "amqp://h\u{e9}te",
        ] {
            assert_eq!(err(url), UrlError::InvalidHost, "{url}");
        }
    }

    #[test]
    fn userinfo_decoding() {
        let p = parse("amqp://us%3Aer:p%40ss%3Aw%2Fd@host");
        assert_eq!(p.username, "us:er");
        assert_eq!(p.password(), "p@ss:w/d");
        // The last '@' ends the userinfo; ':' after the first is password.
        let p = parse("amqp://user:p@ss:word@host:1234");
        assert_eq!(p.username, "user");
        assert_eq!(p.password(), "p@ss:word");
        assert_eq!(p.host, "host");
        assert_eq!(p.port, 1234);
        // An empty user with a password.
        let p = parse("amqp://:pass@host");
        assert_eq!(p.username, "");
        assert_eq!(p.password(), "pass");
    }

    #[test]
    fn whitespace_and_controls() {
        assert_eq!(parse("  amqp://host/v\n").vhost, "v");
        assert_eq!(err("amqp://host/v\nx"), UrlError::ControlCharacter);
        assert_eq!(err("amqp://ho\tst"), UrlError::ControlCharacter);
    }

    #[test]
    fn fragments_are_rejected() {
        assert_eq!(err("amqp://host/v#frag"), UrlError::UnexpectedFragment);
        assert_eq!(err("amqp://user:pa#ss@host"), UrlError::UnexpectedFragment);
    }

    #[test]
    fn query_parameters() {
        let p = parse(
            "amqps://host/v?heartbeat=30&frame_max=131072&channel_max=2047\
             &connection_timeout=2500&auth_mechanism=external\
             &server_name_indication=rabbit.example.com&verify=verify_peer",
        );
        assert_eq!(p.heartbeat, Some(30));
        assert_eq!(p.frame_max, Some(131072));
        assert_eq!(p.channel_max, Some(2047));
        assert_eq!(p.connection_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(p.auth_mechanism.as_deref(), Some("EXTERNAL"));
        assert_eq!(p.server_name.as_deref(), Some("rabbit.example.com"));
        assert_eq!(p.vhost, "v");
    }

    #[test]
    fn query_without_vhost_and_zero_values() {
        let p = parse("amqp://host?heartbeat=0&frame_max=0&channel_max=0");
        assert_eq!(p.vhost, "/");
        assert_eq!(p.heartbeat, Some(0));
        assert_eq!(p.frame_max, Some(0));
        assert_eq!(p.channel_max, Some(0));
        assert_eq!(parse("amqp://host?frame_max=4096").frame_max, Some(4096));
        assert_eq!(parse("amqp://host?").heartbeat, None);
        assert_eq!(parse("amqp://host/?&&heartbeat=5&").heartbeat, Some(5));
    }

    #[test]
    fn unsupported_auth_mechanism_is_an_error_not_plain() {
        for (query, name) in [
            ("auth_mechanism=SCRAM-SHA-256", "SCRAM-SHA-256"),
            ("auth_mechanism=amqplain,plain", "AMQPLAIN"),
            ("auth_mechanism=cr-demo&auth_mechanism=plain", "CR-DEMO"),
        ] {
            assert_eq!(
                err(&format!("amqp://u:s3cr3t@host?{query}")),
                UrlError::UnsupportedAuthMechanism(name.into()),
                "{query}"
            );
        }
        // Only the mechanism that would be used must be supported.
        let p = parse("amqp://host?auth_mechanism=plain&auth_mechanism=scram-sha-1");
        assert_eq!(p.auth_mechanism.as_deref(), Some("PLAIN"));
    }

    #[test]
    fn query_unknown_ignored_and_repeats() {
        let p = parse("amqp://host?cacertfile=/tmp/ca.pem&x&=y&heartbeat=1&heartbeat=2");
        assert_eq!(p.heartbeat, Some(2));
        let p = parse("amqp://host?auth_mechanism=plain,amqplain&auth_mechanism=external");
        assert_eq!(p.auth_mechanism.as_deref(), Some("PLAIN"));
        let p = parse("amqp://host?auth_mechanism=%20External%20,plain");
        assert_eq!(p.auth_mechanism.as_deref(), Some("EXTERNAL"));
        let p = parse("amqp://host?heart%62eat=7");
        assert_eq!(p.heartbeat, Some(7));
    }

    #[test]
    fn bad_query_values() {
        let cases = [
            ("heartbeat", "abc"),
            ("heartbeat", "-1"),
            ("heartbeat", "65536"),
            ("heartbeat", ""),
            ("heartbeat", "+5"),
            ("frame_max", "4095"),
            ("frame_max", "1"),
            ("frame_max", "4294967296"),
            ("channel_max", "65536"),
            ("connection_timeout", "0"),
            ("connection_timeout", "1.5"),
            ("connection_timeout", "18446744073709551616"),
            ("auth_mechanism", ""),
            ("auth_mechanism", ",plain"),
            ("auth_mechanism", "pl ain"),
            ("server_name_indication", ""),
            ("server_name_indication", "a b"),
        ];
        for (name, value) in cases {
            let url = format!("amqp://host?{name}={value}");
            assert_eq!(
                err(&url),
                UrlError::InvalidParameter {
                    name: name.to_owned(),
                    value: value.to_owned()
                },
                "{url}"
            );
        }
        // A name without '=' has an empty value.
        assert_eq!(
            err("amqp://host?heartbeat"),
            UrlError::InvalidParameter {
                name: "heartbeat".to_owned(),
                value: String::new()
            }
        );
    }

    #[test]
    fn default_params() {
        let p = ConnectionParams::default();
        assert!(!p.tls);
        assert_eq!(p.host, "localhost");
        assert_eq!(p.port, 5672);
        assert_eq!(p.username, "guest");
        assert_eq!(p.password(), "guest");
        assert_eq!(p.vhost, "/");
        assert_eq!(p.heartbeat, None);
        assert_eq!(p.frame_max, None);
        assert_eq!(p.channel_max, None);
        assert_eq!(p.connection_timeout, None);
        assert_eq!(p.auth_mechanism, None);
        assert_eq!(p.server_name, None);
        assert_eq!(p.to_string(), "amqp://guest:***@localhost:5672/%2f");
    }

    #[test]
    fn from_str_matches_parse() {
        let url = "amqp://a:b@c:1/d?heartbeat=2";
        assert_eq!(
            url.parse::<ConnectionParams>(),
            ConnectionParams::parse(url)
        );
        assert_eq!(
            "ftp://x".parse::<ConnectionParams>(),
            Err(UrlError::UnsupportedScheme("ftp".to_owned()))
        );
    }

    #[test]
    fn set_password() {
        let mut p = parse("amqp://user@host");
        assert_eq!(p.password(), "");
        p.set_password("new");
        assert_eq!(p.password(), "new");
        p.set_password(String::from("other"));
        assert_eq!(p.password(), "other");
    }

    #[test]
    fn display_redacts_and_reencodes() {
        let p = parse("amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(p.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
        let p = parse("amqps://us%40er:pw@[::1]/a%2fb%20c");
        assert_eq!(p.to_string(), "amqps://us%40er:***@[::1]:5671/a%2fb%20c");
        let p = parse("amqp://host/");
        assert_eq!(p.to_string(), "amqp://guest:***@host:5672/");
        let p = parse(
            "amqp://h?channel_max=9&heartbeat=10&frame_max=8192\
             &connection_timeout=1500&auth_mechanism=external&server_name_indication=sni.example",
        );
        assert_eq!(
            p.to_string(),
            "amqp://guest:***@h:5672/%2f?heartbeat=10&frame_max=8192&channel_max=9\
             &connection_timeout=1500&auth_mechanism=EXTERNAL&server_name_indication=sni.example"
        );
    }

    #[test]
    fn display_round_trips_apart_from_the_password() {
        for url in [
            "amqp://",
            "amqp://:@/",
            "amqps://u%3a%2f%40ser:x@ho%2Dst:1/v%2f%3f%23h%C3%A9?heartbeat=3",
            "amqp://[fe80::1]:10000/",
            "amqp://h?frame_max=0&connection_timeout=1&auth_mechanism=plain",
        ] {
            let mut p = parse(url);
            let again = parse(&p.to_string());
            assert_eq!(again.password(), "***", "{url}");
            p.set_password("***");
            assert_eq!(again, p, "{url}");
        }
    }

    #[test]
    fn debug_redacts() {
        let p = parse("amqp://user:s3cr3t@host/v");
        let debug = format!("{p:?}");
        assert!(debug.contains("password: \"***\""), "{debug}");
        assert!(debug.contains("username: \"user\""), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let pretty = format!("{p:#?}");
        assert!(!pretty.contains("s3cr3t"), "{pretty}");
    }

    #[test]
    fn secrets_never_appear() {
        let good = [
            "amqp://user:s3cr3t@host/v",
            "amqps://user:s3cr3t@[::1]:1/%2f?heartbeat=1",
            "amqp://user:%73%33%63%72%33%74@host",
        ];
        for url in good {
            let p = parse(url);
            assert_eq!(p.password(), "s3cr3t");
            for shown in [p.to_string(), format!("{p:?}"), format!("{p:#?}")] {
                assert!(!shown.contains("s3cr3t"), "{url}: {shown}");
            }
        }
        // Malformed URLs whose password ends up in odd places.
        for url in [
            "amqp://user:s3cr3t",
            "amqp://user:s3cr3t/x@host",
            "amqp://user:s3c/r3t@host",
            "amqp://user:s3cr3t?x@host",
            "amqp://user:s3cr3t#@host",
            "amqp://user:s3cr3t@host:s3cr3t",
            "amqp://user:s3cr3t@host:0",
            "amqp://user:s3cr3t@ho st",
            "amqp://user:s3cr3t%zz@host",
            "amqp://user:s3cr3t%ff@host",
            "amqp://user:s3cr3t@host/a/b",
            "amqp://user:s3cr3t@host/%zz",
            "amqp://user:s3cr3t@[::1",
            "amqp://user:s3cr3t@host?heartbeat=x",
            "amqp://user:s3cr3t@host\n/x",
            "amqp:user:s3cr3t@host",
            "amqp:/user:s3cr3t@host",
            "http://user:s3cr3t@host",
            "user:s3cr3t@host",
            "amqp://user:s3/cr3t:1@host",
            "amqp://user:123456",
        ] {
            let e = err(url);
            let secret = if url.contains("123456") {
                "123456"
            } else {
                "s3cr3t"
            };
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(secret), "{url}: {shown}");
            }
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            UrlError::UnsupportedScheme("http".to_owned()).to_string(),
            "unsupported scheme \"http\" (expected amqp or amqps)"
        );
        assert_eq!(
            UrlError::InvalidPercentEncoding {
                component: "password"
            }
            .to_string(),
            "invalid percent-encoding in password"
        );
        assert_eq!(
            UrlError::InvalidParameter {
                name: "heartbeat".to_owned(),
                value: "x".to_owned()
            }
            .to_string(),
            "invalid value \"x\" for query parameter \"heartbeat\""
        );
        assert_eq!(
            UrlError::InvalidPort.to_string(),
            "invalid port (expected a number from 1 to 65535)"
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // Every string built from a small alphabet of URI metacharacters, up
        // to length 5, after a valid prefix, plus a simple pseudo-random walk.
        let alphabet = [
            "%", "@", ":", "/", "?", "#", "[", "]", "a", "1", "=", "&", "é", "%2",
        ];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            let _ = ConnectionParams::parse(&format!("amqp://{s}"));
            let _ = ConnectionParams::parse(&s);
            if s.chars().count() < 5 {
                for a in alphabet {
                    stack.push(format!("{s}{a}"));
                }
            }
        }
        let mut seed: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut s = String::from("amqps://");
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                s.push_str(alphabet[(seed as usize) % alphabet.len()]);
            }
            if let Ok(p) = ConnectionParams::parse(&s) {
                // Anything accepted prints as something that parses again.
                let _ = p.addr_string();
                assert!(
                    ConnectionParams::parse(&p.to_string()).is_ok(),
                    "{s} -> {p}"
                );
            }
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        }
    }
}
