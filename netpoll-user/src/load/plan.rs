//! A load run, planned and checked before anything connects: the target's address and
//! protocol, and the options.

use std::net::{SocketAddr, ToSocketAddrs};

use analysis::workload::LoadOptions;
use anyhow::{Context as _, Result, bail};

use super::{Protocol, udp};

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// A load run, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// How the target was given: `host:port` or the URL.
    pub target: String,
    pub protocol: Protocol,
    /// Echo payload, for the results.
    pub payload: Option<usize>,
    /// Checked, and with no more threads than connections.
    pub options: LoadOptions,
}

impl Plan {
    /// A plan for `target`: `host:port` (echo of `payload` bytes), `http://host[:port]/path`,
    /// `redis://host[:port]` or `memcached://host[:port]` (GET of a `payload`-byte value).
    pub fn new(target: &str, payload: usize, o: &LoadOptions) -> Result<Plan> {
        let (addr, protocol, payload) = match target.strip_prefix("http://") {
            Some(rest) => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                let with_port = if authority
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                {
                    authority.to_string()
                } else {
                    format!("{authority}:80")
                };
                (
                    resolve(&with_port, target)?,
                    Protocol::http_get(authority, path),
                    None,
                )
            }
            None if target.contains("://") => {
                let (scheme, rest) = target.split_once("://").unwrap_or_default();
                let (protocol, default_port) = match scheme {
                    "redis" => (Protocol::redis_get(payload), 6379),
                    "memcached" => (Protocol::memcached_get(payload), 11211),
                    "udp" => {
                        if !(udp::SEQUENCE_BYTES..=MAX_DATAGRAM).contains(&payload) {
                            bail!(
                                "udp:// needs a --payload of {} to {MAX_DATAGRAM} bytes (each datagram carries a sequence number)",
                                udp::SEQUENCE_BYTES
                            );
                        }
                        (Protocol::udp_echo(payload), 7)
                    }
                    _ => bail!(
                        "{target}: the targets are host:port (echo), http://, redis://, memcached:// and udp://"
                    ),
                };
                let host_port = if rest.contains(':') {
                    rest.trim_end_matches('/').to_string()
                } else {
                    format!("{}:{default_port}", rest.trim_end_matches('/'))
                };
                if payload == 0 {
                    bail!("--payload (the value's size) must be at least 1 byte");
                }
                (resolve(&host_port, target)?, protocol, Some(payload))
            }
            None => {
                if payload == 0 {
                    bail!("--payload must be at least 1 byte");
                }
                (
                    resolve(target, target)?,
                    Protocol::echo(payload),
                    Some(payload),
                )
            }
        };
        Plan::with(addr, target.to_string(), protocol, payload, o)
    }

    pub fn with(
        addr: SocketAddr,
        target: String,
        protocol: Protocol,
        payload: Option<usize>,
        o: &LoadOptions,
    ) -> Result<Plan> {
        if o.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if o.idle_connections > 0 && matches!(protocol, Protocol::Udp { .. }) {
            bail!("--idle-connections: UDP has no connections to leave idle");
        }
        let loopback = addr.ip().is_loopback() && addr.is_ipv4();
        if o.connections + o.idle_connections > super::idle::PER_SOURCE && !loopback {
            bail!(
                "{} connections to one address need several source addresses (28,232 ephemeral ports each); netpoll uses 127.0.0.0/8's for a loopback target only",
                o.connections + o.idle_connections
            );
        }
        if o.threads == 0 {
            bail!("--client-threads must be at least 1");
        }
        if o.duration.is_zero() || o.timeout.is_zero() {
            bail!("--duration and --timeout must be greater than zero");
        }
        if let Some(rate) = o.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of requests per second");
        }
        Ok(Plan {
            addr,
            target,
            protocol,
            payload,
            options: LoadOptions {
                // A thread without a connection would have nothing to do.
                threads: o.threads.min(o.connections),
                ..o.clone()
            },
        })
    }

    /// Descriptors this process needs: its connections (the idle ones too when they fit here,
    /// else helper processes hold them), plus room for the rest of the process.
    pub fn descriptors(&self) -> u64 {
        let idle = if super::idle::fit_here(self) {
            self.options.idle_connections
        } else {
            0
        };
        (self.options.connections + idle) as u64 + super::idle::SPARE_DESCRIPTORS
    }

    pub fn describe(&self) -> String {
        let protocol = match (self.protocol.name(), self.payload) {
            ("echo", Some(p)) => format!("echo, {p} B"),
            ("redis", Some(p)) => format!("redis GET of a {p} B value"),
            ("memcached", Some(p)) => format!("memcached get of a {p} B value"),
            ("udp", Some(p)) => format!("UDP echo, {p} B datagrams"),
            _ => "HTTP GET".into(),
        };
        let mode = match self.options.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".into(),
        };
        let idle = if self.options.idle_connections > 0 {
            format!(" + {} idle", self.options.idle_connections)
        } else {
            String::new()
        };
        format!(
            "{} ({protocol}), {} connections{idle}, {} thread{}, {mode}",
            self.target,
            self.options.connections,
            self.options.threads,
            if self.options.threads == 1 { "" } else { "s" }
        )
    }
}

fn resolve(host_port: &str, shown: &str) -> Result<SocketAddr> {
    host_port
        .to_socket_addrs()
        .with_context(|| format!("{shown}: not a host:port address"))?
        .next()
        .with_context(|| format!("{shown}: the name has no address"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options() -> LoadOptions {
        LoadOptions {
            connections: 4,
            idle_connections: 0,
            threads: 8,
            rate: None,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn targets_choose_the_protocol() {
        let echo = Plan::new("127.0.0.1:7878", 64, &options()).unwrap();
        assert_eq!(echo.protocol.name(), "echo");
        assert_eq!(echo.payload, Some(64));
        assert_eq!(echo.options.threads, 4, "no more threads than connections");
        let http = Plan::new("http://127.0.0.1:8080/a/b?c", 64, &options()).unwrap();
        assert_eq!(http.addr, "127.0.0.1:8080".parse().unwrap());
        let request = String::from_utf8(http.protocol.request().to_vec()).unwrap();
        assert!(request.starts_with("GET /a/b?c HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        let default_port = Plan::new("http://127.0.0.1", 1, &options()).unwrap();
        assert_eq!(default_port.addr.port(), 80);
        let redis = Plan::new("redis://127.0.0.1", 3, &options()).unwrap();
        assert_eq!((redis.protocol.name(), redis.addr.port()), ("redis", 6379));
        assert_eq!(
            redis.protocol.request(),
            b"*2\r\n$3\r\nGET\r\n$11\r\nnetpoll:key\r\n"
        );
        let memcached = Plan::new("memcached://127.0.0.1:11311", 3, &options()).unwrap();
        assert_eq!(
            (memcached.protocol.name(), memcached.addr.port()),
            ("memcached", 11311)
        );
        assert_eq!(memcached.protocol.request(), b"get netpoll:key\r\n");
    }

    #[test]
    fn bad_plans_are_refused_with_the_option_named() {
        let err = |target: &str, o: LoadOptions| {
            Plan::new(target, 64, &o).err().map(|e| format!("{e:#}"))
        };
        assert!(
            err("https://x", options())
                .unwrap()
                .contains("the targets are")
        );
        assert!(
            err("nonsense", options())
                .unwrap()
                .contains("not a host:port")
        );
        let zero = |f: fn(&mut LoadOptions)| {
            let mut o = options();
            f(&mut o);
            err("127.0.0.1:1", o).unwrap()
        };
        assert!(zero(|o| o.connections = 0).contains("--connections"));
        assert!(zero(|o| o.threads = 0).contains("--client-threads"));
        assert!(zero(|o| o.duration = Duration::ZERO).contains("--duration"));
        assert!(zero(|o| o.rate = Some(0.0)).contains("--rate"));
        assert!(zero(|o| o.rate = Some(-5.0)).contains("--rate"));
        assert!(
            Plan::new("127.0.0.1:1", 0, &options())
                .unwrap_err()
                .to_string()
                .contains("--payload")
        );
    }
}
