//! What the load generator sends and how it knows a reply is complete: a request whose reply is
//! known byte for byte (netpoll's echo, where the reply is the request; a redis `GET` of a key
//! set before the run, in RESP; a memcached `get` of one, in its text protocol), or HTTP/1.1
//! keep-alive GET (headers, then a Content-Length or chunked body). A reply that differs in any
//! byte is a bad response, counted as an error.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// The request protocol, shared read-only by every connection.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// The reply to `request` is exactly `reply`.
    Exact {
        name: &'static str,
        request: Vec<u8>,
        reply: Vec<u8>,
        /// Sent once on a connection of its own before the run, with the reply it must get
        /// (storing the key the requests read).
        setup: Option<(Vec<u8>, Vec<u8>)>,
    },
    Http {
        request: Vec<u8>,
    },
    /// UDP echo: each datagram of `request`'s size comes back unchanged; its first bytes carry
    /// a sequence number (set per datagram by the UDP worker, `udp.rs`).
    Udp {
        request: Vec<u8>,
    },
}

/// The key the redis and memcached modes store and read.
const KEY: &str = "netpoll:key";

/// `len` bytes of a-z: a misplaced or foreign byte is visible.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A RESP array of bulk strings: how redis clients send commands.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Protocol {
    /// Echo of `payload` bytes.
    pub fn echo(payload: usize) -> Protocol {
        let request = pattern(payload);
        Protocol::Exact {
            name: "echo",
            reply: request.clone(),
            request,
            setup: None,
        }
    }

    /// redis: `GET` of a key holding `value_len` bytes, `SET` before the run.
    pub fn redis_get(value_len: usize) -> Protocol {
        let value = pattern(value_len);
        let mut reply = format!("${value_len}\r\n").into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\n");
        Protocol::Exact {
            name: "redis",
            request: resp(&[b"GET", KEY.as_bytes()]),
            reply,
            setup: Some((resp(&[b"SET", KEY.as_bytes(), &value]), b"+OK\r\n".to_vec())),
        }
    }

    /// memcached's text protocol: `get` of a key holding `value_len` bytes, `set` before the run.
    pub fn memcached_get(value_len: usize) -> Protocol {
        let value = pattern(value_len);
        let mut reply = format!("VALUE {KEY} 0 {value_len}\r\n").into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\nEND\r\n");
        let mut set = format!("set {KEY} 0 0 {value_len}\r\n").into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        Protocol::Exact {
            name: "memcached",
            request: format!("get {KEY}\r\n").into_bytes(),
            reply,
            setup: Some((set, b"STORED\r\n".to_vec())),
        }
    }

    /// UDP echo of `payload`-byte datagrams.
    pub fn udp_echo(payload: usize) -> Protocol {
        Protocol::Udp {
            request: pattern(payload),
        }
    }

    pub fn http_get(host: &str, path: &str) -> Protocol {
        Protocol::Http {
            request: format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netpoll\r\n\r\n")
                .into_bytes(),
        }
    }

    pub fn request(&self) -> &[u8] {
        match self {
            Protocol::Exact { request, .. }
            | Protocol::Http { request }
            | Protocol::Udp { request } => request,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Exact { name, .. } => name,
            Protocol::Http { .. } => "http",
            Protocol::Udp { .. } => "udp",
        }
    }

    /// The set-up request, if the protocol has one: sent once, its reply checked, before the
    /// run (a server that answers anything else is not the server the protocol speaks to).
    /// UDP has no connection to refuse, so one datagram must come back first: without it the
    /// load would send into nothing for the whole run.
    pub fn prepare(&self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        if let Protocol::Udp { request } = self {
            return udp_echoes(addr, request, timeout);
        }
        let Protocol::Exact {
            name,
            setup: Some((request, expected)),
            ..
        } = self
        else {
            return Ok(());
        };
        let mut conn = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("cannot connect to {addr} to set up the {name} key"))?;
        conn.set_read_timeout(Some(timeout))?;
        conn.write_all(request)?;
        let mut reply = vec![0u8; expected.len()];
        conn.read_exact(&mut reply)
            .with_context(|| format!("{addr} did not answer the {name} set-up request"))?;
        if reply != *expected {
            bail!(
                "{addr} answered the {name} set-up with {:?}, not {:?}: is it a {name} server?",
                String::from_utf8_lossy(&reply),
                String::from_utf8_lossy(expected)
            );
        }
        Ok(())
    }
}

/// Sends one datagram to `addr` and waits up to `timeout` for it to come back unchanged.
fn udp_echoes(addr: SocketAddr, datagram: &[u8], timeout: Duration) -> Result<()> {
    let any = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(any).context("cannot open a UDP socket")?;
    socket
        .connect(addr)
        .with_context(|| format!("cannot address udp://{addr}"))?;
    socket.set_read_timeout(Some(timeout))?;
    let mut reply = vec![0u8; datagram.len() + 1];
    // A refused datagram (ICMP port unreachable) is reported by the next call on the socket.
    let echoed = socket
        .send(datagram)
        .and_then(|_| socket.recv(&mut reply))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow::anyhow!(
                    "udp://{addr} did not echo a datagram within {:.1} s",
                    timeout.as_secs_f64()
                )
            }
            _ => anyhow::anyhow!("cannot reach udp://{addr}: {e}"),
        })?;
    if reply[..echoed] != *datagram {
        bail!(
            "udp://{addr} answered a {}-byte datagram with {echoed} other bytes: is it an echo server?",
            datagram.len()
        );
    }
    Ok(())
}

/// A reply, once complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (200 for an echo).
    pub status: u16,
    /// The server will close the connection (`Connection: close`).
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Reply),
    /// Not the expected echo, or not HTTP we can follow.
    Bad,
}

/// Consumes one reply's bytes as they arrive.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// Exact replies: bytes matched so far. HTTP: unused.
    matched: usize,
    /// HTTP: header bytes so far (headers may arrive split).
    head: Vec<u8>,
    body: Body,
    reply: Option<Reply>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Still reading the headers.
    #[default]
    Head,
    /// Bytes of body left.
    Length(u64),
    /// Chunked: reading a chunk-size line (digits so far, whether the extension began).
    ChunkSize {
        size: u64,
        digits: u32,
        in_extension: bool,
        cr: bool,
    },
    /// Chunked: bytes of chunk data left, then its CRLF.
    ChunkData(u64),
    ChunkDataEnd {
        cr: bool,
    },
    /// Chunked, after the last (zero) chunk: trailer lines until an empty one.
    Trailer {
        line_len: usize,
        cr: bool,
    },
}

impl ReplyParser {
    pub fn reset(&mut self) {
        self.matched = 0;
        self.head.clear();
        self.body = Body::Head;
        self.reply = None;
    }

    /// Feeds bytes read from the socket. A reply never shares a read with the next one, since
    /// a connection has one request outstanding, so surplus bytes make the reply bad.
    pub fn feed(&mut self, protocol: &Protocol, data: &[u8]) -> Progress {
        match protocol {
            Protocol::Exact { reply, .. } => {
                let expected = &reply[self.matched..];
                if data.len() > expected.len() || expected[..data.len()] != *data {
                    return Progress::Bad;
                }
                self.matched += data.len();
                if self.matched == reply.len() {
                    Progress::Done(Reply {
                        status: 200,
                        close: false,
                    })
                } else {
                    Progress::NeedMore
                }
            }
            Protocol::Http { .. } => self.feed_http(data),
            // Datagrams are checked whole by the UDP worker, never through a stream parser.
            Protocol::Udp { .. } => Progress::Bad,
        }
    }

    fn feed_http(&mut self, data: &[u8]) -> Progress {
        if self.body == Body::Head {
            self.head.extend_from_slice(data);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            let head_len = match response.parse(&self.head) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if self.head.len() < 64 * 1024 => {
                    return Progress::NeedMore;
                }
                _ => return Progress::Bad,
            };
            let status = response.code.unwrap_or(0);
            let mut close = response.version == Some(0);
            let mut length = None;
            let mut chunked = false;
            for h in response.headers.iter() {
                let value = h.value.trim_ascii();
                let has = |word: &[u8]| {
                    value
                        .windows(word.len())
                        .any(|w| w.eq_ignore_ascii_case(word))
                };
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                        Some(n) => length = Some(n),
                        None => return Progress::Bad,
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = has(b"chunked");
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = has(b"close") || (close && !has(b"keep-alive"));
                }
            }
            self.reply = Some(Reply { status, close });
            // No body: 1xx, 204, 304 (replies to GET, never HEAD here).
            let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
            self.body = match (bodiless, chunked, length) {
                (true, _, _) => Body::Length(0),
                (_, true, _) => Body::ChunkSize {
                    size: 0,
                    digits: 0,
                    in_extension: false,
                    cr: false,
                },
                (_, _, Some(n)) => Body::Length(n),
                // A body delimited by the connection's end cannot be reused for keep-alive.
                _ => return Progress::Bad,
            };
            // The buffer is kept (not split off) so that replies do not allocate.
            let head = std::mem::take(&mut self.head);
            let progress = self.feed_body(&head[head_len..]);
            self.head = head;
            return progress;
        }
        self.feed_body(data)
    }

    fn feed_body(&mut self, data: &[u8]) -> Progress {
        let mut i = 0;
        loop {
            match &mut self.body {
                Body::Head => unreachable!("headers are parsed before the body"),
                Body::Length(left) => {
                    let take = (*left).min((data.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        break;
                    }
                    return Progress::NeedMore;
                }
                Body::ChunkSize {
                    size,
                    digits,
                    in_extension,
                    cr,
                } => {
                    let Some(&b) = data.get(i) else {
                        return Progress::NeedMore;
                    };
                    i += 1;
                    match b {
                        b'\n' if *cr => {
                            if *digits == 0 {
                                return Progress::Bad;
                            }
                            self.body = if *size == 0 {
                                Body::Trailer {
                                    line_len: 0,
                                    cr: false,
                                }
                            } else {
                                Body::ChunkData(*size)
                            };
                        }
                        b'\r' => *cr = true,
                        _ if *cr => return Progress::Bad,
                        b';' => *in_extension = true,
                        _ if *in_extension => {}
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *digits < 15 => {
                                *size = *size * 16 + d as u64;
                                *digits += 1;
                            }
                            _ => return Progress::Bad,
                        },
                    }
                }
                Body::ChunkData(left) => {
                    let take = (*left).min((data.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left > 0 {
                        return Progress::NeedMore;
                    }
                    self.body = Body::ChunkDataEnd { cr: false };
                }
                Body::ChunkDataEnd { cr } => {
                    let Some(&b) = data.get(i) else {
                        return Progress::NeedMore;
                    };
                    i += 1;
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) => {
                            self.body = Body::ChunkSize {
                                size: 0,
                                digits: 0,
                                in_extension: false,
                                cr: false,
                            }
                        }
                        _ => return Progress::Bad,
                    }
                }
                Body::Trailer { line_len, cr } => {
                    let Some(&b) = data.get(i) else {
                        return Progress::NeedMore;
                    };
                    i += 1;
                    match b {
                        b'\r' => *cr = true,
                        b'\n' if *cr && *line_len == 0 => break,
                        b'\n' if *cr => {
                            *line_len = 0;
                            *cr = false;
                        }
                        _ => {
                            *line_len += 1;
                            *cr = false;
                        }
                    }
                }
            }
        }
        if i != data.len() {
            return Progress::Bad;
        }
        match self.reply {
            Some(reply) => Progress::Done(reply),
            None => Progress::Bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(protocol: &Protocol, bytes: &[u8], piece: usize) -> Progress {
        let mut parser = ReplyParser::default();
        let mut last = Progress::NeedMore;
        for chunk in bytes.chunks(piece) {
            assert_eq!(last, Progress::NeedMore, "finished early");
            last = parser.feed(protocol, chunk);
        }
        last
    }

    const OK: Progress = Progress::Done(Reply {
        status: 200,
        close: false,
    });

    #[test]
    fn echo_completes_on_the_last_byte_in_any_split() {
        let p = Protocol::echo(100);
        for piece in [1, 7, 100] {
            assert_eq!(feed_in_pieces(&p, p.request(), piece), OK);
        }
        let mut wrong = p.request().to_vec();
        wrong[50] = b'!';
        assert_eq!(feed_in_pieces(&p, &wrong, 100), Progress::Bad);
        let mut longer = p.request().to_vec();
        longer.push(b'a');
        assert_eq!(feed_in_pieces(&p, &longer, 101), Progress::Bad);
    }

    #[test]
    fn redis_and_memcached_replies_are_checked_byte_for_byte() {
        let redis = Protocol::redis_get(5);
        assert_eq!(feed_in_pieces(&redis, b"$5\r\nabcde\r\n", 1), OK);
        // A nil (the key missing) or another value is a bad response.
        assert_eq!(feed_in_pieces(&redis, b"$-1\r\n", 100), Progress::Bad);
        assert_eq!(
            feed_in_pieces(&redis, b"$5\r\nabcdX\r\n", 100),
            Progress::Bad
        );
        let memcached = Protocol::memcached_get(3);
        assert_eq!(
            feed_in_pieces(&memcached, b"VALUE netpoll:key 0 3\r\nabc\r\nEND\r\n", 4),
            OK
        );
        assert_eq!(feed_in_pieces(&memcached, b"END\r\n", 100), Progress::Bad);
    }

    #[test]
    fn http_content_length_in_any_split() {
        let p = Protocol::http_get("localhost", "/");
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        for piece in [1, 3, 10, reply.len()] {
            assert_eq!(feed_in_pieces(&p, reply, piece), OK, "piece {piece}");
        }
        let short = &reply[..reply.len() - 1];
        assert_eq!(feed_in_pieces(&p, short, 100), Progress::NeedMore);
    }

    #[test]
    fn http_chunked_with_extension_and_trailer() {
        let p = Protocol::http_get("localhost", "/");
        let reply = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;name=x\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let done = Progress::Done(Reply {
            status: 404,
            close: false,
        });
        for piece in [1, 2, 9, reply.len()] {
            assert_eq!(feed_in_pieces(&p, reply, piece), done, "piece {piece}");
        }
    }

    #[test]
    fn http_connection_close_and_http10() {
        let p = Protocol::http_get("localhost", "/");
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let http10_keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        let close = |c| {
            Progress::Done(Reply {
                status: 200,
                close: c,
            })
        };
        assert_eq!(feed_in_pieces(&p, closing, 4), close(true));
        assert_eq!(feed_in_pieces(&p, http10, 4), close(true));
        assert_eq!(feed_in_pieces(&p, http10_keep, 4), close(false));
    }

    #[test]
    fn http_garbage_and_unframed_bodies_are_bad() {
        let p = Protocol::http_get("localhost", "/");
        assert_eq!(feed_in_pieces(&p, b"SSH-2.0-x\r\n\r\n", 100), Progress::Bad);
        // No length, not chunked: delimited by close, useless for keep-alive.
        assert_eq!(
            feed_in_pieces(&p, b"HTTP/1.1 200 OK\r\n\r\nbody", 100),
            Progress::Bad
        );
        assert_eq!(
            feed_in_pieces(&p, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", 100),
            Progress::Bad
        );
        assert_eq!(
            feed_in_pieces(&p, b"HTTP/1.1 204 No Content\r\n\r\n", 100),
            Progress::Done(Reply {
                status: 204,
                close: false
            })
        );
    }
}
