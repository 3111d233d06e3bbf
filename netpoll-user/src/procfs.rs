//! Readers of /proc: processes (alive, descendants, names, CPU time and switches), the machine's
//! CPU time, and sockets (a descriptor's socket inode, the listening and UDP sockets of the
//! network tables). Read-only and best-effort: a process that exits mid-read reads as gone.

use std::{collections::HashSet, fs, io::Read as _, path::Path};

/// A small /proc file, read in one `read` (two with the end): procfs reports a size of 0, on
/// which `fs::read_to_string` starts with 32-byte reads and doubles (six reads for a 500-byte
/// `stat`). netpoll reads these files many times a second while it collects, on the machine
/// it measures.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(2 * len, 0);
        }
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A process is alive while /proc has it and it is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match read(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Every live process descended from `roots` (children, grandchildren...), from /proc.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = read(format!("/proc/{pid}/stat")).ok()?;
            // After the parenthesised comm: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) && !roots.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

pub fn process_comm(pid: u32) -> String {
    read(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The TCP addresses these processes listen on: their sockets' inodes (/proc/PID/fd) looked up
/// among the listening sockets of /proc/net/tcp and tcp6.
pub fn listening_addrs(pids: &[u32]) -> Vec<std::net::SocketAddr> {
    let inodes: HashSet<u64> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    let mut addrs: Vec<_> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_listening)
                .collect::<Vec<_>>()
        })
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(addr, _)| addr)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// A listening socket's address and inode from a line of /proc/net/tcp{,6}:
/// `sl local_address rem_address st ... inode`, addresses in hex words of host byte order.
fn parse_listening(line: &str) -> Option<(std::net::SocketAddr, u64)> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&LISTEN) {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match ip.len() {
        8 => std::net::IpAddr::from(word(0)?),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            std::net::IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some((
        std::net::SocketAddr::new(ip, port),
        fields.get(9)?.parse().ok()?,
    ))
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    // Fields after the parenthesised name, which may itself contain spaces, start at 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(n.checked_sub(3)?)?.parse().ok()
}

/// CPU time and scheduling figures of a process, read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub user_ns: u64,
    pub system_ns: u64,
    /// Summed over the live threads.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub threads: u64,
    /// The switch counts were read (`read`, not `read_stat`).
    pub switches_read: bool,
}

impl ProcessSample {
    /// CPU time and thread count only (one small read); None when the process is gone.
    pub fn read_stat(pid: u32) -> Option<ProcessSample> {
        let stat = read(format!("/proc/{pid}/stat")).ok()?;
        let field = |n| stat_field(&stat, n);
        let ticks = clock_ticks();
        Some(ProcessSample {
            user_ns: field(14)? * 1_000_000_000 / ticks,
            system_ns: field(15)? * 1_000_000_000 / ticks,
            threads: field(20)?,
            ..ProcessSample::default()
        })
    }

    /// Everything, context switches summed over the threads; None when the process is gone.
    pub fn read(pid: u32) -> Option<ProcessSample> {
        let mut sample = Self::read_stat(pid)?;
        sample.switches_read = true;
        for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let Ok(status) = read(task.path().join("status")) else {
                continue; // the thread exited meanwhile
            };
            for line in status.lines() {
                let value = |prefix: &str| {
                    line.strip_prefix(prefix)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                if let Some(v) = value("voluntary_ctxt_switches:") {
                    sample.voluntary_switches += v;
                } else if let Some(v) = value("nonvoluntary_ctxt_switches:") {
                    sample.involuntary_switches += v;
                }
            }
        }
        Some(sample)
    }
}

impl ProcessSample {
    /// `read` summed over `root` and its descendants (a server's worker processes); None when
    /// `root` is gone.
    pub fn read_tree(root: u32) -> Option<ProcessSample> {
        let mut total = Self::read(root)?;
        for pid in descendants(&[root]) {
            let Some(s) = Self::read(pid) else { continue };
            total.user_ns += s.user_ns;
            total.system_ns += s.system_ns;
            total.voluntary_switches += s.voluntary_switches;
            total.involuntary_switches += s.involuntary_switches;
            total.threads += s.threads;
        }
        Some(total)
    }
}

/// CPU time of the whole machine, from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq, all CPUs.
    pub busy_ns: u64,
    /// Time the hypervisor ran something else, all CPUs.
    pub steal_ns: u64,
}

impl MachineSample {
    pub fn read() -> Option<MachineSample> {
        let stat = read("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // cpu user nice system idle iowait irq softirq steal guest guest_nice (in USER_HZ).
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let tick = |t: u64| t * 1_000_000_000 / clock_ticks();
        let field = |i: usize| f.get(i).copied().unwrap_or(0);
        Some(MachineSample {
            busy_ns: tick(field(0) + field(1) + field(2) + field(5) + field(6)),
            steal_ns: tick(field(7)),
        })
    }
}

/// CPUs online (not only those this thread may use: `netpoll run` pins itself).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// The inode of a socket descriptor from its /proc/PID/fd link (`socket:[12345]`).
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the sockets a process holds.
pub fn socket_inodes(pid: u32) -> HashSet<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flat_map(|dir| dir.flatten())
        .filter_map(|fd| socket_inode(fs::read_link(fd.path()).ok()?.to_str()?))
        .collect()
}

/// The inodes (10th column) of the sockets of network tables (`udp`, `udp6`...) in the network
/// namespace `pid` is in.
pub fn net_table_inodes(pid: u32, tables: &[&str]) -> HashSet<u64> {
    tables
        .iter()
        .filter_map(|t| read(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9)?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_is_a_descendant() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let found = super::descendants(&[std::process::id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    #[test]
    fn this_process_has_threads_and_cpu_time() {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)))
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {}
        let sample = super::ProcessSample::read(std::process::id()).expect("own /proc");
        assert!(sample.threads >= 4, "{sample:?}");
        assert!(
            super::ProcessSample::read_stat(std::process::id())
                .unwrap()
                .threads
                >= 4
        );
        assert!(sample.user_ns + sample.system_ns > 0, "{sample:?}");
        assert!(
            sample.voluntary_switches + sample.involuntary_switches > 0,
            "{sample:?}"
        );
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(super::stat_field("1 (a b) S 7", 4), Some(7));
        assert!(super::ProcessSample::read(0).is_none());
    }

    #[test]
    fn listening_sockets_are_found_by_process() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let found = super::listening_addrs(&[std::process::id()]);
        assert!(found.contains(&v4.local_addr().unwrap()), "{found:?}");
        if let Some(v6) = v6 {
            assert!(found.contains(&v6.local_addr().unwrap()), "{found:?}");
        }
        assert!(super::listening_addrs(&[0]).is_empty());
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1";
        assert_eq!(
            super::parse_listening(line),
            Some(("127.0.0.1:8080".parse().unwrap(), 4242))
        );
        assert_eq!(super::parse_listening(&line.replace(" 0A ", " 01 ")), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_process() {
        assert!(super::process_alive(std::process::id()));
        assert!(!super::process_alive(0));
    }

    #[test]
    fn socket_inodes_are_read_from_fd_links() {
        assert_eq!(super::socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(super::socket_inode("anon_inode:[eventpoll]"), None);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        let own = super::socket_inodes(std::process::id());
        let in_table = super::net_table_inodes(std::process::id(), &["udp"]);
        assert!(
            own.intersection(&in_table).count() >= 1,
            "{own:?} {in_table:?}"
        );
        drop(udp);
    }
}
