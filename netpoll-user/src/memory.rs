//! Readers of memory from /proc: a process tree's pages, descriptors and mappings
//! (`analysis::memory::ProcessMemory`), and the kernel's connection- and thread-related memory
//! (`KernelMemory`). Read at a run's edges, not per tick: a process of 19,000 threads has
//! 38,000 mappings to read.

use std::fs;

use analysis::memory::{KernelMemory, MemoryEdge, ProcessMemory, SLABS, SlabUse};

use crate::procfs::{self, read};

/// `Name:   123 kB` lines (status, smaps_rollup, meminfo): the value in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// One process's memory; None when it is gone.
pub fn process(pid: u32) -> Option<ProcessMemory> {
    let status = read(format!("/proc/{pid}/status")).ok()?;
    // smaps_rollup: the sums of /proc/PID/smaps, Pss among them (status has no Pss).
    let rollup = read(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name| kb_field(&status, name).unwrap_or(0);
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
        .unwrap_or(0);
    Some(ProcessMemory {
        processes: 1,
        threads,
        descriptors: fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        mappings: read(format!("/proc/{pid}/maps"))
            .map(|m| m.lines().count() as u64)
            .unwrap_or(0),
        rss_bytes: field("VmRSS"),
        pss_bytes: kb_field(&rollup, "Pss").unwrap_or(0),
        anon_bytes: field("RssAnon"),
        file_bytes: field("RssFile"),
        shmem_bytes: field("RssShmem"),
        page_tables_bytes: field("VmPTE"),
        virtual_bytes: field("VmSize"),
    })
}

/// `roots` and their descendants, each once.
fn family(roots: &[u32]) -> Vec<u32> {
    let mut pids = roots.to_vec();
    pids.extend(procfs::descendants(roots));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `roots` and their descendants (a server's worker processes), each process once, summed;
/// None when none of them is alive.
fn processes(roots: &[u32]) -> Option<ProcessMemory> {
    let mut total: Option<ProcessMemory> = None;
    for m in family(roots).into_iter().filter_map(process) {
        let t = total.get_or_insert_with(ProcessMemory::default);
        t.processes += m.processes;
        t.threads += m.threads;
        t.descriptors += m.descriptors;
        t.mappings += m.mappings;
        t.rss_bytes += m.rss_bytes;
        t.pss_bytes += m.pss_bytes;
        t.anon_bytes += m.anon_bytes;
        t.file_bytes += m.file_bytes;
        t.shmem_bytes += m.shmem_bytes;
        t.page_tables_bytes += m.page_tables_bytes;
        t.virtual_bytes += m.virtual_bytes;
    }
    total
}

/// The memory of `roots` and their descendants, and the kernel's (sockstat from the first's
/// network namespace); None when they are all gone.
pub fn edge(roots: &[u32]) -> Option<MemoryEdge> {
    Some(MemoryEdge {
        server: processes(roots)?,
        kernel: kernel(*roots.first()?),
    })
}

/// The sum of the resident high-water marks (`VmHWM`) of `roots` and their descendants.
pub fn peak_rss(roots: &[u32]) -> u64 {
    family(roots)
        .into_iter()
        .filter_map(|pid| kb_field(&read(format!("/proc/{pid}/status")).ok()?, "VmHWM"))
        .sum()
}

/// The sockets `roots` and their descendants hold.
pub fn sockets(roots: &[u32]) -> u64 {
    family(roots)
        .into_iter()
        .map(|pid| procfs::socket_inodes(pid).len() as u64)
        .sum()
}

/// The kernel's figures: the machine's meminfo and slabinfo, and the sockstat of the network
/// namespace `pid` is in.
pub fn kernel(pid: u32) -> KernelMemory {
    let meminfo = read("/proc/meminfo").unwrap_or_default();
    let mut kernel = KernelMemory {
        kernel_stack_bytes: kb_field(&meminfo, "KernelStack").unwrap_or(0),
        page_tables_bytes: kb_field(&meminfo, "PageTables").unwrap_or(0),
        slab_unreclaimable_bytes: kb_field(&meminfo, "SUnreclaim").unwrap_or(0),
        ..KernelMemory::default()
    };
    let sockstat = read(format!("/proc/{pid}/net/sockstat"))
        .or_else(|_| read("/proc/net/sockstat"))
        .unwrap_or_default();
    parse_sockstat(&sockstat, &mut kernel);
    if let Ok(slabinfo) = read("/proc/slabinfo") {
        kernel.slabs = parse_slabinfo(&slabinfo);
    }
    kernel
}

/// `sockets: used 9` and `TCP: inuse 1 orphan 0 tw 6 alloc 1 mem 24` (mem in pages).
fn parse_sockstat(text: &str, into: &mut KernelMemory) {
    let page = page_size();
    for line in text.lines() {
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let pairs: Vec<(&str, u64)> = rest
            .split_whitespace()
            .collect::<Vec<_>>()
            .chunks(2)
            .filter_map(|kv| Some((kv[0], kv.get(1)?.parse().ok()?)))
            .collect();
        let get = |k: &str| pairs.iter().find(|p| p.0 == k).map_or(0, |p| p.1);
        match label {
            "sockets" => into.sockets = get("used"),
            "TCP" => {
                into.tcp_inuse = get("inuse");
                into.tcp_orphan = get("orphan");
                into.tcp_time_wait = get("tw");
                into.tcp_alloc = get("alloc");
                into.tcp_buffer_bytes = get("mem") * page;
            }
            _ => {}
        }
    }
}

/// The caches of [`SLABS`] in /proc/slabinfo: `name active_objs num_objs objsize ...`.
fn parse_slabinfo(text: &str) -> std::collections::BTreeMap<String, SlabUse> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = *f.first()?;
            if !SLABS.contains(&name) {
                return None;
            }
            let objects: u64 = f.get(1)?.parse().ok()?;
            let object_size: u64 = f.get(3)?.parse().ok()?;
            Some((
                name.to_string(),
                SlabUse {
                    objects,
                    object_size,
                    bytes: objects * object_size,
                },
            ))
        })
        .collect()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader},
        process::{Child, Command, Stdio},
    };

    use super::*;

    const MIB: u64 = 1 << 20;
    /// Stack each fixture thread touches.
    const STACK_TOUCHED: usize = 256 << 10;

    /// The fixture's side (run as a child by `a_fixture_of_known_memory_is_measured_exactly`):
    /// maps and touches NETPOLL_MEMORY_FIXTURE="MIB,THREADS" (every page written), starts the
    /// threads, each touching 256 KiB of its stack, says `ready` and waits to be killed.
    #[test]
    #[ignore = "the child process of a_fixture_of_known_memory_is_measured_exactly"]
    fn memory_fixture() {
        let Ok(spec) = std::env::var("NETPOLL_MEMORY_FIXTURE") else {
            return;
        };
        let (mib, threads) = spec.split_once(',').expect("MIB,THREADS");
        let (mib, threads): (usize, usize) = (mib.parse().unwrap(), threads.parse().unwrap());
        let len = mib << 20;
        if len > 0 {
            // SAFETY: a fresh anonymous private mapping, written only inside its length.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
                .cast::<u8>();
                assert_ne!(p.cast(), libc::MAP_FAILED);
                for i in (0..len).step_by(4096) {
                    p.add(i).write_volatile(1);
                }
            }
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                let mut stack = [0u8; STACK_TOUCHED];
                for i in (0..STACK_TOUCHED).step_by(4096) {
                    stack[i] = 1;
                }
                std::hint::black_box(&mut stack);
                ready.send(()).unwrap();
                loop {
                    std::thread::park();
                }
            });
        }
        for _ in 0..threads {
            ready_rx.recv().unwrap();
        }
        println!("ready");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    /// This test binary run as the fixture; returns once it is ready.
    fn fixture(mib: u64, threads: usize) -> Child {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory::tests::memory_fixture",
                "--ignored",
                "--nocapture",
            ])
            .env("NETPOLL_MEMORY_FIXTURE", format!("{mib},{threads}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("fixture");
        let out = BufReader::new(child.stdout.take().unwrap());
        assert!(
            out.lines()
                .map_while(Result::ok)
                .any(|l| l.trim() == "ready"),
            "the fixture did not get ready"
        );
        child
    }

    /// Two fixtures, one with nothing and one with 64 MiB touched and 16 threads that touched
    /// 256 KiB of stack each: their difference is what netpoll must read, within the page
    /// granularity of the threads' own pages (a thread's first stack pages, its TLS, the
    /// signal stack's page it may touch: under 64 KiB each here).
    #[test]
    fn a_fixture_of_known_memory_is_measured_exactly() {
        let (mib, threads) = (64, 16);
        let mut base = fixture(0, 0);
        let mut full = fixture(mib, threads);
        let a = process(base.id()).expect("base");
        let b = process(full.id()).expect("full");
        for c in [&mut base, &mut full] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let anon = b.anon_bytes - a.anon_bytes;
        let expected = mib * MIB + (threads * STACK_TOUCHED) as u64;
        let slack = threads as u64 * 64 * 1024;
        eprintln!(
            "fixture: anonymous +{anon} bytes (expected {expected}), +{} threads, +{} mappings",
            b.threads - a.threads,
            b.mappings - a.mappings
        );
        assert!(
            anon >= expected && anon <= expected + slack,
            "anonymous memory grew by {anon} bytes, expected {expected} (+ at most {slack})"
        );
        assert_eq!(b.threads - a.threads, threads as u64);
        // A thread's stack and guard page, its signal stack and guard: 4 mappings each (and
        // a malloc arena for some: 2 more).
        let maps = b.mappings - a.mappings;
        let least = (threads * analysis::models::MAPPINGS_PER_THREAD) as u64;
        assert!(
            maps >= least && maps <= least + 2 * threads as u64 + 2,
            "{maps} mappings"
        );
        assert!(b.rss_bytes - a.rss_bytes >= expected, "{a:?} {b:?}");
    }

    #[test]
    fn this_process_has_memory_descriptors_and_mappings() {
        let m = process(std::process::id()).expect("own /proc");
        assert!(m.rss_bytes > 0 && m.rss_bytes == m.anon_bytes + m.file_bytes + m.shmem_bytes);
        assert!(
            m.descriptors >= 3 && m.mappings > 5 && m.threads >= 1,
            "{m:?}"
        );
        assert!(m.pss_bytes > 0 && m.virtual_bytes > m.rss_bytes, "{m:?}");
        assert!(process(0).is_none());
        assert!(peak_rss(&[std::process::id()]) >= m.rss_bytes / 2);
        let tree = edge(&[std::process::id()]).expect("tree").server;
        assert!(tree.processes >= 1 && tree.rss_bytes >= m.rss_bytes / 2);
        let _udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(sockets(&[std::process::id()]) >= 1);
    }

    #[test]
    fn sockstat_and_slabinfo_lines_are_read() {
        let mut k = KernelMemory::default();
        parse_sockstat(
            "sockets: used 9\nTCP: inuse 3 orphan 1 tw 6 alloc 4 mem 2\nUDP: inuse 0 mem 52\n",
            &mut k,
        );
        assert_eq!((k.sockets, k.tcp_inuse, k.tcp_orphan), (9, 3, 1));
        assert_eq!((k.tcp_time_wait, k.tcp_alloc), (6, 4));
        assert_eq!(k.tcp_buffer_bytes, 2 * page_size());
        let slabs = parse_slabinfo(
            "slabinfo - version: 2.1\n\
             TCP                   66    130   2368   13    8 : tunables    0    0    0 : slabdata     10     10      0\n\
             eventpoll_epi        567    704    128   32    1 : tunables    0    0    0 : slabdata     22     22      0\n\
             kmalloc-8           1000   1000      8  512    1 : tunables    0    0    0 : slabdata      2      2      0\n",
        );
        assert_eq!(slabs.len(), 2);
        assert_eq!(slabs["TCP"].bytes, 66 * 2368);
        assert_eq!(slabs["eventpoll_epi"].objects, 567);
        assert_eq!(
            kb_field("VmRSS:\t    1996 kB\n", "VmRSS"),
            Some(1996 * 1024)
        );
        assert_eq!(kb_field("VmRSSx: 1 kB\n", "VmRSS"), None);
    }
}
