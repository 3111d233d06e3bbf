//! What a server's connections and threads cost in memory, as Linux reports it: the server's
//! own pages (its processes summed, from `/proc/PID/smaps_rollup` and `status`) and the kernel's
//! structures that grow with connections and threads (socket memory from the server's network
//! namespace, kernel stacks and page tables from `/proc/meminfo`, slab objects from
//! `/proc/slabinfo`), at the edges of a run's window and at its peak.
//!
//! A connection's cost is not one division: it is the slope of memory against connections
//! held, fitted over the runs of a sweep ([`crate::stats::slope`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A process tree's memory at one instant: the sums over its live processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessMemory {
    pub processes: u64,
    pub threads: u64,
    /// Open descriptors (every connection held is one, besides listeners, files, epoll...).
    pub descriptors: u64,
    /// Memory mappings (`/proc/PID/maps` lines; `vm.max_map_count` caps them per process:
    /// each thread's stack is two).
    pub mappings: u64,
    /// Resident pages (`Rss`): anonymous + file + shared memory. Pages shared between the
    /// processes count once per process.
    pub rss_bytes: u64,
    /// Proportional set size (`Pss`): shared pages divided among their users, so that the sum
    /// over processes counts each page once.
    pub pss_bytes: u64,
    /// Resident anonymous pages (heaps, and every thread's user stack).
    pub anon_bytes: u64,
    /// Resident pages of mapped files (the executable, libraries).
    pub file_bytes: u64,
    pub shmem_bytes: u64,
    /// The processes' page tables (`VmPTE`).
    pub page_tables_bytes: u64,
    /// Address space reserved (`VmSize`): thread stacks are reserved whole, resident as used.
    pub virtual_bytes: u64,
}

/// Slab caches of the kernel objects a connection or an epoll registration costs: `TCP` (a
/// TCP socket), `sock_inode_cache` (its inode), `filp` (its open file), `eventpoll_epi` (an
/// epoll registration), `eventpoll_pwq` (an epoll wait-queue hook), `tw_sock_TCP` (a
/// connection in TIME_WAIT). A cache the kernel merged into another is not listed.
pub const SLABS: &[&str] = &[
    "TCP",
    "TCPv6",
    "sock_inode_cache",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "tw_sock_TCP",
];

/// Objects in use in one slab cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SlabUse {
    pub objects: u64,
    pub object_size: u64,
    /// `objects * object_size`.
    pub bytes: u64,
}

/// The kernel's memory that grows with connections and threads, at one instant. The machine's
/// (meminfo, slabinfo) and the server's network namespace's (sockstat): on loopback both ends of
/// every connection are on this machine, so a connection's kernel cost here is its two sockets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelMemory {
    /// Every thread's kernel stack (`KernelStack`).
    pub kernel_stack_bytes: u64,
    /// Every process's page tables (`PageTables`).
    pub page_tables_bytes: u64,
    /// Slab memory that cannot be reclaimed (`SUnreclaim`): sockets, epoll items, files.
    pub slab_unreclaimable_bytes: u64,
    /// Sockets of every kind in use (sockstat `sockets: used`).
    pub sockets: u64,
    /// TCP sockets in use (open, any state but TIME_WAIT), orphaned, in TIME_WAIT, allocated.
    pub tcp_inuse: u64,
    pub tcp_orphan: u64,
    pub tcp_time_wait: u64,
    pub tcp_alloc: u64,
    /// Buffer memory of TCP sockets (sockstat `mem`, pages, in bytes): queued data.
    pub tcp_buffer_bytes: u64,
    /// The caches of [`SLABS`] that `/proc/slabinfo` lists (it needs root).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slabs: BTreeMap<String, SlabUse>,
}

/// The server's memory and the kernel's at one edge of the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEdge {
    pub server: ProcessMemory,
    pub kernel: KernelMemory,
}

/// A run's memory: at the window's edges, and the peak.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMemory {
    /// Connections the load generator held open to the server when the window closed (active
    /// + idle).
    pub connections: u64,
    pub before: MemoryEdge,
    pub after: MemoryEdge,
    /// The sum of each server process's resident high-water mark (`VmHWM`) at the window's
    /// end: at least the tree's peak resident memory (each process's peak counted even if they
    /// were not at the same instant).
    pub peak_rss_bytes: u64,
    /// Most threads seen at once (as `server_process.peak_threads`).
    pub peak_threads: u64,
}

impl RunMemory {
    /// The kernel's memory in the caches of [`SLABS`] at the window's end.
    pub fn slab_bytes(&self) -> u64 {
        self.after.kernel.slabs.values().map(|s| s.bytes).sum()
    }
}

/// `12.3 MiB`, `4.1 KiB`, `512 B`.
pub fn format_bytes(bytes: f64) -> String {
    let a = bytes.abs();
    if a >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
    } else if a >= (1 << 20) as f64 {
        format!("{:.1} MiB", bytes / (1 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_written_in_binary_units() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(4200.0), "4.1 KiB");
        assert_eq!(format_bytes(3.0 * 1048576.0), "3.0 MiB");
        assert_eq!(format_bytes(-2048.0), "-2.0 KiB");
        // The caches' bytes at the window's end, summed.
        let slab = |objects| SlabUse {
            objects,
            object_size: 128,
            bytes: objects * 128,
        };
        let mut m = RunMemory::default();
        m.after.kernel.slabs.insert("TCP".into(), slab(4));
        m.after.kernel.slabs.insert("eventpoll_epi".into(), slab(2));
        assert_eq!(m.slab_bytes(), 6 * 128);
    }
}
