//! AF_XDP: kernel bypass. An XDP program (netpoll-ebpf's `xdp.rs`) hands the echo port's
//! datagrams, straight from the network device, to an AF_XDP socket whose rings this loop
//! shares with the kernel: it takes each frame from the RX ring, turns it around in place (MAC,
//! IP addresses and UDP ports swapped), and puts it on the TX ring; sent frames come back on the
//! completion ring and go to the fill ring, to be received into again. No socket, no kernel
//! network stack, and no syscall per datagram: by default (need_wakeup) a `poll` when there is
//! nothing to do and a `sendto` kick per batch to send (copy mode sends in that syscall);
//! `--busy-poll` never sleeps, leaving the kicks.
//!
//! The rings are this file's own code over the kernel's ABI (`libc`'s `if_xdp.h` types): the
//! pure-Rust crates (xdpilone, xsk-rs) would hide exactly what a student should see, the four
//! rings and their producer/consumer indexes, and xsk-rs needs libxdp. aya loads and attaches
//! the XDP program and fills its XSKMAP.
//!
//! veth supports AF_XDP only in copy mode: frames are copied into and out of the UMEM, so its
//! throughput is not a NIC's in zero-copy mode; what it shows is the path and the syscalls.

use std::{
    io,
    net::{IpAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};
use aya::{
    EbpfLoader,
    maps::{MapData, XskMap},
    programs::{Xdp, XdpMode},
};
use netpoll_ebpf::abi;

use super::{Config, Handler};

/// Frames of the UMEM, each FRAME bytes (a full 1500-byte MTU frame fits).
const FRAMES: u32 = 4096;
const FRAME: u32 = 2048;
/// Entries of each ring (a power of two).
const RING: u32 = 2048;
/// Frames handled per pass over the rings.
const BATCH: u32 = 64;

/// One ring mapped from the kernel: producer and consumer indexes, flags, descriptors.
struct Ring<T> {
    map: NonNull<u8>,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
}

impl<T> Ring<T> {
    /// Maps the ring at `pgoff` of the socket, laid out as `off` says.
    fn map(fd: i32, off: &libc::xdp_ring_offset, pgoff: libc::off_t) -> io::Result<Ring<T>> {
        let map_len = off.desc as usize + RING as usize * size_of::<T>();
        // SAFETY: mapping the socket's ring, a region the kernel sized for it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map.cast::<u8>();
        // SAFETY: offsets inside the mapping, from the kernel.
        unsafe {
            Ok(Ring {
                map: NonNull::new_unchecked(base),
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                descs: base.add(off.desc as usize).cast(),
                mask: RING - 1,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the live mapping; the kernel updates it concurrently, hence atomic.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: inside the live mapping; the kernel reads it concurrently, hence atomic.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: inside the live mapping; the kernel sets the flag concurrently, hence atomic.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: masked into the ring's descriptor array.
        unsafe { self.descs.add((index & self.mask) as usize) }
    }

    /// Entries ready to consume (RX, completion): from our consumer index to the kernel's
    /// producer index.
    fn ready(&self) -> (u32, u32) {
        let cons = self.consumer().load(Ordering::Relaxed);
        let prod = self.producer().load(Ordering::Acquire);
        (cons, prod.wrapping_sub(cons))
    }

    /// Free entries to produce into (fill, TX).
    fn free(&self) -> (u32, u32) {
        let prod = self.producer().load(Ordering::Relaxed);
        let cons = self.consumer().load(Ordering::Acquire);
        (prod, RING - prod.wrapping_sub(cons))
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

fn setsockopt<T>(fd: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface carrying `ip`, and its index: AF_XDP needs a device, not loopback.
fn interface_of(ip: IpAddr) -> Result<(String, u32)> {
    let name = nix::ifaddrs::getifaddrs()?
        .find(|i| {
            i.address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in())
                .is_some_and(|a| IpAddr::V4(a.ip()) == ip)
        })
        .map(|i| i.interface_name)
        .with_context(|| format!("no network interface has the address {ip}"))?;
    if name == "lo" {
        bail!("af-xdp needs a network device, not loopback: run it with `netpoll run --netns`");
    }
    let c = std::ffi::CString::new(name.clone())?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("interface {name} vanished");
    }
    Ok((name, index))
}

pub fn serve(socket: UdpSocket, config: Arc<Config>) -> Result<()> {
    // The UDP socket stays bound: it reserves the port (datagrams never reach it: the XDP
    // program takes them first).
    let local = socket.local_addr()?;
    let (ifname, ifindex) = interface_of(local.ip())?;
    let mut handler = Handler::new(config.clone())?;

    // The XDP program, for this port, on this device (native mode where the driver has it).
    let mut ebpf = EbpfLoader::new()
        .override_global(abi::XDP_ECHO_PORT_GLOBAL, &local.port().to_be(), true)
        .load(crate::probes::OBJECT)
        .context("loading the XDP program")?;
    let program: &mut Xdp = ebpf
        .program_mut(abi::XDP_PROGRAM)
        .context("the BPF object has no XDP program")?
        .try_into()?;
    program
        .load()
        .context("the kernel refused the XDP program")?;
    program
        .attach_to_if_index(ifindex, XdpMode::Driver)
        .or_else(|_| program.attach_to_if_index(ifindex, XdpMode::Skb))
        .with_context(|| format!("cannot attach XDP to {ifname}"))?;

    // The UMEM: FRAMES frames the kernel copies packets into and out of.
    let umem_len = (FRAMES * FRAME) as usize;
    // SAFETY: an anonymous private mapping, unmapped when the process exits.
    let umem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            umem_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if umem == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).context("cannot map the UMEM");
    }
    let umem = umem.cast::<u8>();
    // SAFETY: plain syscall; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("no AF_XDP sockets on this kernel");
    }
    // SAFETY: a fresh descriptor we own.
    let xsk = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid xdp_umem_reg.
    let mut reg: libc::xdp_umem_reg = unsafe { std::mem::zeroed() };
    reg.addr = umem as u64;
    reg.len = umem_len as u64;
    reg.chunk_size = FRAME;
    setsockopt(fd, libc::XDP_UMEM_REG, &reg).context("XDP_UMEM_REG")?;
    for ring in [
        libc::XDP_UMEM_FILL_RING,
        libc::XDP_UMEM_COMPLETION_RING,
        libc::XDP_RX_RING,
        libc::XDP_TX_RING,
    ] {
        setsockopt(fd, ring, &RING).context("AF_XDP ring size")?;
    }
    // SAFETY: all-zero is a valid xdp_mmap_offsets; the kernel fills it.
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: a buffer of `len` bytes.
    if unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&raw mut off).cast(),
            &mut len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error()).context("XDP_MMAP_OFFSETS");
    }
    let fill: Ring<u64> = Ring::map(fd, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t)?;
    let completion: Ring<u64> = Ring::map(
        fd,
        &off.cr,
        libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
    )?;
    let rx: Ring<libc::xdp_desc> = Ring::map(fd, &off.rx, libc::XDP_PGOFF_RX_RING)?;
    let tx: Ring<libc::xdp_desc> = Ring::map(fd, &off.tx, libc::XDP_PGOFF_TX_RING)?;

    // Every frame starts in the fill ring (as many as it holds; the rest wait in `spare`).
    let mut spare: Vec<u64> = (0..FRAMES).map(|i| u64::from(i * FRAME)).collect();
    refill(&fill, &mut spare);

    // SAFETY: all-zero is a valid sockaddr_xdp.
    let mut sxdp: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
    sxdp.sxdp_family = libc::AF_XDP as u16;
    sxdp.sxdp_ifindex = ifindex;
    sxdp.sxdp_queue_id = 0;
    sxdp.sxdp_flags = libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP;
    // SAFETY: a sockaddr_xdp of the size passed.
    if unsafe {
        libc::bind(
            fd,
            (&raw const sxdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    } < 0
    {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot bind an AF_XDP socket to {ifname} queue 0"));
    }
    let mut sockets: XskMap<&mut MapData> = ebpf
        .map_mut(abi::XDP_SOCKETS_MAP)
        .context("no XSKMAP in the BPF object")?
        .try_into()?;
    sockets.set(0, xsk.as_raw_fd(), 0)?;
    eprintln!(
        "netpoll serve: af-xdp on {ifname} queue 0 (copy mode{}), port {}",
        if config.server.busy_poll {
            ", busy polling"
        } else {
            ""
        },
        local.port()
    );

    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // Sent frames are free again: back to the fill ring.
        let (cons, n) = completion.ready();
        for i in 0..n {
            // SAFETY: a published completion entry.
            spare.push(unsafe { *completion.slot(cons.wrapping_add(i)) });
        }
        completion
            .consumer()
            .store(cons.wrapping_add(n), Ordering::Release);
        refill(&fill, &mut spare);

        let (rx_cons, received) = rx.ready();
        let (tx_prod, tx_free) = tx.free();
        let n = received.min(tx_free).min(BATCH);
        if n == 0 {
            if received > 0 {
                // TX full: the kernel sends on the kick below.
            } else if !config.server.busy_poll {
                // Nothing to do: sleep until a frame arrives.
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pollfd, 1, 1000) };
                continue;
            }
            if tx.needs_wakeup() && tx_free < RING {
                kick(fd);
            }
            continue;
        }
        for i in 0..n {
            // SAFETY: a published RX descriptor and its frame inside the UMEM.
            let desc = unsafe { *rx.slot(rx_cons.wrapping_add(i)) };
            // SAFETY: the descriptor is published (below the producer index read above), so its frame lies inside the UMEM we mapped, `len` bytes long, and the kernel does not touch it until we give it back.
            let frame = unsafe {
                std::slice::from_raw_parts_mut(umem.add(desc.addr as usize), desc.len as usize)
            };
            handler.handle()?;
            turn_around(frame);
            // SAFETY: a free TX slot (counted above).
            unsafe { *tx.slot(tx_prod.wrapping_add(i)) = desc };
        }
        rx.consumer()
            .store(rx_cons.wrapping_add(n), Ordering::Release);
        tx.producer()
            .store(tx_prod.wrapping_add(n), Ordering::Release);
        // Copy mode sends from the syscall: kick once per batch.
        if tx.needs_wakeup() {
            kick(fd);
        }
    }
}

/// The counts of the XDP program loaded by the af-xdp server `pid`: its `XDP_COUNTS` map,
/// found among the BPF maps the process holds (/proc/PID/fdinfo gives their ids), summed over
/// CPUs. None when the process holds no such map.
pub fn counts(pid: u32) -> Option<analysis::run::XdpCounts> {
    use aya::maps::{Map, PerCpuArray};
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let is_map = std::fs::read_link(fd.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-map");
        if !is_map {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(data) = MapData::from_id(id) else {
            continue;
        };
        if data.info().ok()?.name_as_str() != Some(abi::XDP_COUNTS_MAP) {
            continue;
        }
        let array: PerCpuArray<MapData, u64> = Map::PerCpuArray(data).try_into().ok()?;
        let sum = |i: u32| -> u64 { array.get(&i, 0).map_or(0, |v| v.iter().sum()) };
        return Some(analysis::run::XdpCounts {
            redirected: sum(abi::xdp_counter::REDIRECTED),
            passed: sum(abi::xdp_counter::PASSED),
            dropped: sum(abi::xdp_counter::DROPPED),
        });
    }
    None
}

/// Gives the fill ring as many spare frames as it has room for.
fn refill(fill: &Ring<u64>, spare: &mut Vec<u64>) {
    let (prod, free) = fill.free();
    let n = free.min(spare.len() as u32);
    for i in 0..n {
        let addr = spare.pop().unwrap_or_default();
        // SAFETY: a free fill slot.
        unsafe { *fill.slot(prod.wrapping_add(i)) = addr };
    }
    fill.producer()
        .store(prod.wrapping_add(n), Ordering::Release);
}

/// Asks the kernel to send what the TX ring holds.
fn kick(fd: i32) {
    // SAFETY: an empty send on the AF_XDP socket.
    unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
}

/// The echo, in place: Ethernet addresses, IPv4 addresses and UDP ports swapped. The IP
/// checksum is a sum, unchanged by the swap; the UDP checksum is set to 0 ("none", allowed over
/// IPv4), since the sender's may be only a partial sum left for offload.
fn turn_around(frame: &mut [u8]) {
    if frame.len() < 14 + 20 + 8 {
        return;
    }
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    let ip = 14;
    for i in 0..4 {
        frame.swap(ip + 12 + i, ip + 16 + i);
    }
    let udp = ip + (frame[ip] & 0x0f) as usize * 4;
    if frame.len() < udp + 8 {
        return;
    }
    frame.swap(udp, udp + 2);
    frame.swap(udp + 1, udp + 3);
    frame[udp + 6] = 0;
    frame[udp + 7] = 0;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_is_turned_around() {
        let mut frame: Vec<u8> = (0..60).collect();
        frame[14] = 0x45; // IPv4, 20-byte header
        let original = frame.clone();
        super::turn_around(&mut frame);
        assert_eq!(frame[..6], original[6..12]);
        assert_eq!(frame[6..12], original[..6]);
        assert_eq!(frame[26..30], original[30..34]);
        assert_eq!(frame[30..34], original[26..30]);
        assert_eq!(frame[34..36], original[36..38]);
        assert_eq!(frame[36..38], original[34..36]);
        assert_eq!(frame[40..42], [0, 0]);
        assert_eq!(frame[42..], original[42..]);
    }
}
