//! The server a run measures: one of netpoll's models (`netpoll serve` on a listener netpoll
//! opened and the server inherits), or a third-party server (`--server-cmd`): a shell command
//! started in a process group of its own, waited for until it accepts connections, and stopped
//! the way service managers stop one (SIGTERM to the group, SIGKILL after a grace period, and
//! anything it left behind found and killed).

use std::{
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    time::{Duration, Instant},
};

use analysis::workload::{Workload, parse_seconds};
use anyhow::{Context as _, Result, bail};

use crate::{
    probes::target::{CommandState, HeldCommand, resolve},
    system,
};

/// The options of a third-party server (`netpoll run --server-cmd`).
#[derive(clap::Args)]
pub struct ExternalArgs {
    /// A third-party server instead of a model: this shell command (run with `sh -c`, in a
    /// process group of its own) is profiled with all its processes, loaded through --connect,
    /// and stopped with SIGTERM (SIGKILL after --stop-timeout). It must stay in the foreground
    /// (nginx: -g 'daemon off;').
    #[arg(long, value_name = "CMD", requires = "connect")]
    pub server_cmd: Option<String>,
    /// Where the --server-cmd server listens: HOST:PORT (with --protocol), or a URL as `netpoll
    /// load` takes it (http://HOST:PORT/PATH, redis://HOST:PORT, memcached://HOST:PORT).
    #[arg(long, value_name = "TARGET", requires = "server_cmd")]
    pub connect: Option<String>,
    /// The protocol a HOST:PORT --connect speaks (a URL says it itself).
    #[arg(long, value_enum, requires = "server_cmd")]
    pub protocol: Option<Protocol>,
    /// The server's name in reports (default: the command's program name).
    #[arg(long, requires = "server_cmd")]
    pub name: Option<String>,
    /// How long the --server-cmd server may take to accept connections.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub start_timeout: Duration,
    /// How long the --server-cmd server has to exit after SIGTERM before it is killed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub stop_timeout: Duration,
}

/// The protocols `netpoll load` speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// netpoll's echo: --payload bytes sent, the same bytes back.
    Echo,
    /// HTTP/1.1 keep-alive GET of /.
    Http,
    /// RESP: GET of a key SET before the run.
    Redis,
    /// memcached's text protocol: get of a key set before the run.
    Memcached,
}

impl Protocol {
    fn scheme(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Http => "http",
            Protocol::Redis => "redis",
            Protocol::Memcached => "memcached",
        }
    }
}

/// The load generator's target for `--connect` and `--protocol`: the address itself for echo,
/// else a URL.
pub fn target(connect: &str, protocol: Option<Protocol>) -> Result<String> {
    Ok(match (connect.split_once("://"), protocol) {
        (Some((scheme, _)), Some(p)) if scheme != p.scheme() => bail!(
            "--connect {connect} is a {scheme} URL but --protocol says {}",
            p.scheme()
        ),
        (Some(_), _) | (None, None | Some(Protocol::Echo)) => connect.to_string(),
        (None, Some(Protocol::Http)) => format!("http://{connect}/"),
        (None, Some(p)) => format!("{}://{connect}", p.scheme()),
    })
}

/// The name a command's server gets by default: its program's file name.
pub fn default_name(command: &str) -> String {
    let program = command.split_whitespace().next().unwrap_or("server");
    Path::new(program)
        .file_name()
        .map_or(program.into(), |n| n.to_string_lossy().into_owned())
}

/// `exec CMD` when the command is one simple command, so that the shell becomes the server
/// instead of staying beside it as a second process (which the verdict would count); compound
/// commands (`;`, `&&`, pipes, subshells) and leading assignments are left to the shell.
fn with_exec(command: &str) -> String {
    let mut quote = None;
    let mut escaped = false;
    for c in command.chars() {
        match (quote, c) {
            (_, _) if escaped => escaped = false,
            (None | Some('"'), '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, ';' | '&' | '|' | '(' | ')' | '\n' | '`') => return command.into(),
            _ => {}
        }
    }
    let first = command.split_whitespace().next().unwrap_or_default();
    if first.contains('=') || first == "exec" {
        return command.into();
    }
    format!("exec {command}")
}

/// What to start, checked.
pub enum Spec {
    /// `netpoll serve` on this socket (listening TCP, or bound UDP), which it inherits; in the
    /// network namespace `netns` (an open /run/netns/NAME, kept open by the run's path).
    /// `udp`: the bound address, for a UDP model (ready once it echoes a datagram).
    Model {
        socket: OwnedFd,
        netns: Option<i32>,
        udp: Option<SocketAddr>,
    },
    /// `sh -c command`, expected to accept connections on `addr`.
    External {
        command: String,
        addr: SocketAddr,
        start_timeout: Duration,
        stop_timeout: Duration,
    },
}

impl Spec {
    /// A third-party server's spec; refused when something already accepts connections on
    /// `addr` (the load would go to it, not to the server started).
    pub fn external(args: &ExternalArgs, command: &str, addr: SocketAddr) -> Result<Spec> {
        // A simple command's program is looked up now, for a clear error rather than the
        // shell's complaint and an exit.
        if with_exec(command) != command
            && let Some(program) = command.split_whitespace().next()
            && resolve(program).is_none()
        {
            bail!("cannot start `{program}`: no such executable (not found in PATH)");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!(
                "something already accepts connections on {addr}: stop it, or give the server \
                 another address"
            );
        }
        Ok(Spec::External {
            command: command.into(),
            addr,
            start_timeout: args.start_timeout,
            stop_timeout: args.stop_timeout,
        })
    }
}

/// A started server, held before its first instruction until the probes are attached.
pub struct Server {
    pub held: HeldCommand,
    /// Its command line, for the results.
    pub argv: Vec<String>,
}

impl Server {
    /// Starts the server, held; pinned to `cpus` before its first instruction, so that every
    /// thread and process it creates inherits them.
    pub fn spawn(spec: &Spec, workload: &Workload, cpus: Option<&[usize]>) -> Result<Server> {
        let (held, argv) = match spec {
            Spec::Model { socket, netns, .. } => {
                let exe = std::env::current_exe().context("cannot find the netpoll executable")?;
                let fd = socket.as_raw_fd();
                let mut argv = vec![exe.display().to_string(), "serve".into()];
                argv.extend(workload.args());
                argv.extend(["--listen-fd".into(), fd.to_string()]);
                let held = match netns {
                    Some(ns) => HeldCommand::spawn_in_netns(&argv, fd, *ns)?,
                    None => HeldCommand::spawn_passing(&argv, Some(fd))?,
                };
                (held, argv)
            }
            Spec::External { command, .. } => {
                // Children the server orphans or sends into sessions of their own come back to
                // netpoll, which stops them at the end.
                system::become_subreaper()?;
                let argv = vec!["/bin/sh".into(), "-c".into(), with_exec(command)];
                (HeldCommand::spawn_group(&argv)?, argv)
            }
        };
        let server = Server { held, argv };
        if let Some(cpus) = cpus
            && let Err(e) = system::pin(server.held.pid, cpus)
        {
            server.stop(spec);
            return Err(e);
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.held.pid
    }

    /// Returns once the server accepts connections (a model's listener already does), or
    /// `Ok(Some(code))` when a signal came first; an error when the server exits or does not
    /// accept connections in time, saying what it did instead.
    pub fn wait_until_listening(
        &self,
        spec: &Spec,
        signals: &system::Signals,
    ) -> Result<Option<i32>> {
        let (addr, start_timeout) = match spec {
            Spec::External {
                addr,
                start_timeout,
                ..
            } => (addr, start_timeout),
            Spec::Model {
                udp: Some(addr), ..
            } => return self.wait_until_echoing(*addr, signals),
            Spec::Model { .. } => return Ok(None),
        };
        let deadline = Instant::now() + *start_timeout;
        loop {
            if let Some(code) = signals.received() {
                return Ok(Some(code));
            }
            let accepted = TcpStream::connect_timeout(addr, Duration::from_millis(100)).is_ok();
            if accepted {
                // A server that goes to the background exits at once, maybe after its
                // daemon began to listen: a moment more tells.
                std::thread::sleep(Duration::from_millis(50));
            }
            let exited = match self.held.poll() {
                CommandState::Exited(code) => Some(code),
                CommandState::Running => None,
            };
            if accepted && exited.is_none() {
                return Ok(None);
            }
            if let Some(code) = exited {
                let left: Vec<(u32, String)> = crate::procfs::descendants(&[std::process::id()])
                    .into_iter()
                    .map(|p| (p, crate::procfs::process_comm(p)))
                    .collect();
                if code == 0 && !left.is_empty() {
                    bail!(
                        "the server command exited at once but left {} running: it went to the \
                         background; run it in the foreground (nginx: -g 'daemon off;', \
                         redis-server: --daemonize no)",
                        processes(&left)
                    );
                }
                bail!(
                    "the server command ended ({}) before accepting connections on {addr}",
                    describe_exit(code)
                );
            }
            if Instant::now() >= deadline {
                let mut tree = vec![self.held.pid];
                tree.extend(crate::procfs::descendants(&tree));
                let elsewhere = crate::procfs::listening_addrs(&tree);
                let doing = match elsewhere.as_slice() {
                    [] => "it listens on no TCP port".to_string(),
                    addrs => format!(
                        "it listens on {} instead",
                        addrs
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                bail!(
                    "the server did not accept connections on {addr} within {:.1} s ({doing})",
                    start_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A UDP model is ready when it echoes: the socket is bound before the server starts, but a
    /// model may take time to serve it (af-xdp loads and attaches its XDP program first), and a
    /// datagram sent before then is lost, which would stall a load connection for its timeout.
    fn wait_until_echoing(
        &self,
        addr: SocketAddr,
        signals: &system::Signals,
    ) -> Result<Option<i32>> {
        const PROBE: &[u8] = b"netpoll ready?";
        let any = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = std::net::UdpSocket::bind(any)?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut reply = [0u8; 64];
        loop {
            if let Some(code) = signals.received() {
                return Ok(Some(code));
            }
            let _ = socket.send(PROBE);
            if socket.recv(&mut reply).is_ok_and(|n| &reply[..n] == PROBE) {
                return Ok(None);
            }
            if let CommandState::Exited(code) = self.held.poll() {
                bail!(
                    "the server ended ({}) before answering on {addr}",
                    describe_exit(code)
                );
            }
            if Instant::now() >= deadline {
                bail!("the server did not echo a datagram on {addr} within 10 s");
            }
        }
    }

    /// Stops the server and everything it started; says (on stderr) what had to be forced.
    pub fn stop(&self, spec: &Spec) {
        match spec {
            Spec::Model { .. } => {
                self.held.stop();
            }
            Spec::External { stop_timeout, .. } => {
                let stopped = self.held.stop_group(*stop_timeout);
                if stopped.killed {
                    eprintln!(
                        "netpoll: warning: the server did not exit within {:.1} s of SIGTERM; killed",
                        stop_timeout.as_secs_f64()
                    );
                }
                if !stopped.leftovers.is_empty() {
                    eprintln!(
                        "netpoll: warning: the server left {} running outside its process group; killed",
                        processes(&stopped.leftovers)
                    );
                }
            }
        }
    }
}

/// `2 processes (nginx 123, nginx 124)`.
fn processes(pids: &[(u32, String)]) -> String {
    let named: Vec<String> = pids.iter().map(|(p, comm)| format!("{comm} {p}")).collect();
    let noun = if pids.len() == 1 {
        "process"
    } else {
        "processes"
    };
    format!("{} {noun} ({})", pids.len(), named.join(", "))
}

/// `exited with status 1`, `killed by SIGSEGV`.
pub fn describe_exit(code: i32) -> String {
    match code {
        c if c > 128 => match nix::sys::signal::Signal::try_from(c - 128) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {}", c - 128),
        },
        c => format!("exited with status {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_and_protocol_make_the_load_target() {
        assert_eq!(target("127.0.0.1:1", None).unwrap(), "127.0.0.1:1");
        assert_eq!(
            target("127.0.0.1:1", Some(Protocol::Http)).unwrap(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(
            target("127.0.0.1:1", Some(Protocol::Redis)).unwrap(),
            "redis://127.0.0.1:1"
        );
        assert_eq!(
            target("http://h:1/x", Some(Protocol::Http)).unwrap(),
            "http://h:1/x"
        );
        let err = target("redis://h:1", Some(Protocol::Memcached)).unwrap_err();
        assert!(
            err.to_string().contains("--protocol says memcached"),
            "{err}"
        );
        assert_eq!(default_name("/usr/sbin/nginx -g 'daemon off;'"), "nginx");
        assert_eq!(default_name("redis-server --port 1"), "redis-server");
        assert_eq!(describe_exit(3), "exited with status 3");
        assert_eq!(
            with_exec("nginx -g 'daemon off;'"),
            "exec nginx -g 'daemon off;'"
        );
        assert_eq!(with_exec("cd /x && ./s"), "cd /x && ./s");
        assert_eq!(with_exec("a | b"), "a | b");
        assert_eq!(with_exec("A=1 s"), "A=1 s");
        assert_eq!(with_exec("s \"a;b\" > log"), "exec s \"a;b\" > log");
        assert_eq!(describe_exit(128 + 9), "killed by SIGKILL");
    }
}
