//! A real network path for `netpoll run --netns`: a veth pair with one end in a network
//! namespace of the run's own. The server runs inside the namespace, the load generator outside,
//! so every request crosses a network device (its driver, XDP hook and softirq) instead of
//! loopback. Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarks:
//! a /30 per run, which exists only on this pair.
//!
//! Set up with iproute2 (`ip`), the tool every reader already knows the commands of; torn down
//! when the [`Path`] is dropped (normal end, Ctrl-C, error), and a crashed run's leftovers are
//! removed by the next `--netns` run ([`remove_leftovers`]).

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::procfs;

/// Every name netpoll gives a namespace starts so; the rest is the owning run's PID.
const PREFIX: &str = "netpoll-";

/// The namespace, its veth pair and their addresses, for one run.
pub struct Path {
    pub netns: String,
    /// The veth end outside (the load generator's side) and inside (the server's).
    pub host_if: String,
    pub server_if: String,
    pub host_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    /// /run/netns/NAME, open: what `setns` takes.
    handle: File,
}

/// `ip ARGS`, its error output in the error.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (Debian package iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Removes the namespaces (and with them their veth pairs) of netpoll runs that no longer
/// exist: what a run killed with SIGKILL leaves. Returns what it removed.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for name in namespaces() {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !procfs::process_alive(pid) && ip(&["netns", "delete", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

impl Path {
    /// Creates this run's namespace and veth pair, named after `pid`.
    pub fn create(pid: u32) -> Result<Path> {
        let netns = format!("{PREFIX}{pid}");
        // Interface names are at most 15 bytes: "np" + up to 10 digits + one letter.
        let (host_if, server_if) = (format!("np{pid}h"), format!("np{pid}s"));
        if namespaces().contains(&netns) {
            bail!(
                "network namespace {netns} exists already; remove it with `ip netns delete {netns}`"
            );
        }
        if std::path::Path::new("/sys/class/net")
            .join(&host_if)
            .exists()
        {
            bail!(
                "network interface {host_if} exists already; remove it with `ip link delete {host_if}`"
            );
        }
        // A /30 of 198.18.0.0/15 per PID: .1 outside, .2 inside.
        let block = (pid % 32768) * 4;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block;
        let (host_ip, server_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ip(&["netns", "add", &netns])?;
        // From here on, dropping the path removes whatever was made.
        let handle = match File::open(format!("/run/netns/{netns}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = ip(&["netns", "delete", &netns]);
                return Err(e).context("cannot open the new network namespace");
            }
        };
        let path = Path {
            netns,
            host_if,
            server_if,
            host_ip,
            server_ip,
            handle,
        };
        path.wire()?;
        Ok(path)
    }

    fn wire(&self) -> Result<()> {
        let (ns, h, s) = (&self.netns, &self.host_if, &self.server_if);
        let host_cidr = format!("{}/30", self.host_ip);
        let server_cidr = format!("{}/30", self.server_ip);
        ip(&[
            "link", "add", h, "type", "veth", "peer", "name", s, "netns", ns,
        ])?;
        ip(&["addr", "add", &host_cidr, "dev", h])?;
        ip(&["link", "set", h, "up"])?;
        ip(&["-n", ns, "addr", "add", &server_cidr, "dev", s])?;
        ip(&["-n", ns, "link", "set", s, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The namespace, for `setns` (a server's process enters it before its first instruction).
    pub fn handle(&self) -> std::os::fd::BorrowedFd<'_> {
        self.handle.as_fd()
    }

    /// Runs `f` on a thread inside the namespace: sockets it creates belong there (a server's
    /// listener, bound to the inside address). Namespaces are per thread, so this one thread
    /// enters and the caller's stay where they are.
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let fd = self.handle.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns on an open namespace descriptor, for this thread only.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error())
                            .context("cannot enter the network namespace");
                    }
                    f()
                })
                .join()
                .unwrap_or_else(|_| bail!("a thread inside the network namespace panicked"))
        })
    }

    /// `veth np42h (198.18.0.169) -> netns netpoll-42, np42s (198.18.0.170)`.
    pub fn describe(&self) -> String {
        format!(
            "veth {} ({}) to {} ({}) in network namespace {}",
            self.host_if, self.host_ip, self.server_if, self.server_ip, self.netns
        )
    }
}

impl Drop for Path {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside, and a veth's peer goes with it.
        if let Err(e) = ip(&["netns", "delete", &self.netns]) {
            eprintln!("netpoll: warning: {e:#}");
        }
    }
}
