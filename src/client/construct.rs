//! Making a client: parsing, the address list, TLS, and the first connect.

use super::*;

impl Client {
    /// Parses `url` (`amqp://user:pass@host:port/vhost?heartbeat=..`) and
    /// starts connecting, without blocking on the TCP connect.
    ///
    /// Name resolution uses the system resolver and may block; give an IP
    /// address to avoid it. A URL may name several brokers
    /// (`amqp://user:pass@h1:5672,h2:5673/vhost`): see
    /// [`Client::with_addresses`].
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL; [`Error::Config`] for an `amqps://` URL
    /// whose TLS settings cannot be used (a CA or client certificate file
    /// that cannot be read, a host or `server_name_indication` that is no
    /// valid TLS server name); [`Error::ConnectionBroken`] when the host
    /// does not resolve or no socket can be made.
    pub fn new(url: &str) -> Result<Client, Error> {
        Client::with_options(url, Options::default())
    }

    /// As [`Client::new`], with [`Options`].
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn with_options(url: &str, options: Options) -> Result<Client, Error> {
        Client::from_params_list(ConnectionParams::parse_hosts(url)?, options)
    }

    /// Connects with parsed [`ConnectionParams`].
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn from_params(params: ConnectionParams, options: Options) -> Result<Client, Error> {
        Client::from_params_list(vec![params], options)
    }

    /// Connects to whichever of several brokers (the nodes of a cluster)
    /// answers: each URL names one broker, or several
    /// (`amqp://u:p@h1,h2:5673/vhost`).
    ///
    /// The URLs must agree on everything but host, port and
    /// `server_name_indication` (user, password, vhost, scheme, query
    /// parameters); each host gets its own TLS server name. The attempt
    /// tries the addresses in [`Options::address_order`] (shuffled by
    /// default), resolving each host when its turn comes and giving each
    /// TCP connect [`Options::connect_timeout`]; the first to connect gets
    /// the AMQP handshake, bounded by the URL's `connection_timeout` (30 s
    /// by default). A handshake that fails there (the broker closes, sends
    /// what is not AMQP, stays silent, or refuses with anything but a
    /// refused login or vhost) moves on to the next address, taking the
    /// operations queued meanwhile (none of which was sent) with it.
    /// [`Client::connected_address`] tells which it was.
    ///
    /// ```no_run
    /// use puka::{AddressOrder, Client, Options};
    ///
    /// let options = Options::default().address_order(AddressOrder::InOrder);
    /// let mut client = Client::with_addresses(
    ///     &["amqp://app:pw@rabbit1/%2f", "amqp://app:pw@rabbit2:5673/%2f"],
    ///     options,
    /// )?;
    /// let p = client.handshake();
    /// client.wait(p)?;
    /// println!("connected to {:?}", client.connected_address());
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL, no URL
    /// ([`UrlError::NoAddress`](crate::url::UrlError::NoAddress)) or URLs
    /// that disagree
    /// ([`UrlError::InconsistentAddresses`](crate::url::UrlError::InconsistentAddresses)).
    /// [`Error::Config`] as for [`Client::new`], checked for every
    /// address's TLS server name before any connect.
    /// When no TCP connect can even be started: [`Error::ConnectionBroken`]
    /// naming each address and its failure. Failures found later fail the
    /// [`Client::handshake`] promise the same way, or with
    /// [`Error::ConnectTimeout`] when every connect timed out.
    pub fn with_addresses<S: AsRef<str>>(urls: &[S], options: Options) -> Result<Client, Error> {
        let mut list = Vec::new();
        for url in urls {
            list.extend(ConnectionParams::parse_hosts(url.as_ref())?);
        }
        Client::from_params_list(list, options)
    }

    /// As [`Client::with_addresses`], with parsed [`ConnectionParams`]:
    /// [`Client::params`] is the first.
    ///
    /// # Errors
    /// As [`Client::with_addresses`].
    pub fn from_params_list(
        mut list: Vec<ConnectionParams>,
        options: Options,
    ) -> Result<Client, Error> {
        if list.is_empty() {
            return Err(crate::url::UrlError::NoAddress.into());
        }
        if let Some(i) = list.iter().position(|p| !p.same_but_address(&list[0])) {
            return Err(crate::url::UrlError::InconsistentAddresses(i).into());
        }
        let addresses = addresses::Addresses::new(&list, &options);
        let params = list.swap_remove(0);
        #[cfg(not(feature = "tls"))]
        if params.tls {
            return Err(Error::Config("amqps:// needs puka's `tls` feature".into()));
        }
        #[cfg(feature = "tls")]
        let addresses = if params.tls {
            addresses.with_tls(&options.tls.client_config()?)?
        } else {
            addresses
        };
        let mechanism = protocol::negotiate::mechanism(params.auth_mechanism.as_deref())?;
        let config = Config {
            username: params.username.clone(),
            password: params.password().to_string(),
            vhost: params.vhost.clone(),
            heartbeat: params.heartbeat,
            frame_max: params.frame_max,
            channel_max: params.channel_max,
            client_properties: options.client_properties.clone(),
            confirms: options.confirms,
            max_message_size: options.max_message_size,
            connect_timeout: Some(params.connection_timeout.unwrap_or(Duration::from_secs(30))),
            mechanism,
            ack_timing: options.ack_timing,
            blocked_timeout: options.blocked_timeout,
            // A failed first handshake may move on to the next address
            // with the work queued meanwhile (see `after_io`).
            on_handshake_failure: protocol::OnHandshakeFailure::Hold,
        };
        #[cfg(feature = "tracing")]
        let (client_name, host) = (
            options
                .client_properties
                .get("connection_name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            params.host.clone(),
        );
        let recovery_policy = options.recovery;
        let mut promises = Promises::default();
        let connect_id = promises.create();
        let conn = Connection::new(config, connect_id.tag(), Instant::now());
        let mut client = Client {
            conn,
            params,
            options,
            sock: None,
            closed_sock: None,
            registered: None,
            addresses,
            poll: None,
            events: None,
            promises,
            connect_promise: Promise::new(connect_id),
            conn_events: VecDeque::new(),
            conn_callback: None,
            loop_break: false,
            reading: Reading::UpToDate,
            writing: Writing::Ready,
            recovery: recovery_policy.map(recovery::recoverer),
            #[cfg(feature = "tracing")]
            span: connection_span(&client_name, &host),
        };
        client.connect_next()?;
        Ok(client)
    }
}
