//! The `af-xdp` model's XDP program: datagrams to the echo port go to the AF_XDP socket of
//! the queue they arrived on (the model's user-space ring loop); everything else (ARP, other
//! ports, other protocols) passes to the kernel's stack as if nothing were attached. It counts
//! what it did in its own per-CPU map, so the report can show redirected, passed and dropped.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{PerCpuArray, XskMap},
    programs::XdpContext,
};

use netpoll_ebpf::abi::xdp_counter;

/// The UDP port served through AF_XDP, in network byte order; set by the loader.
#[unsafe(no_mangle)]
static XDP_ECHO_PORT_BE: u16 = 0;

/// AF_XDP sockets by receive queue.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(64, 0);

/// [`xdp_counter`] counts, per CPU.
#[map]
static XDP_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(xdp_counter::COUNT, 0);

const ETH_LEN: usize = 14;
const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const IPPROTO_UDP: u8 = 17;
const UDP_LEN: usize = 8;

#[inline(always)]
fn count(which: u32) {
    if let Some(c) = XDP_COUNTS.get_ptr_mut(which) {
        // SAFETY: a per-CPU value; XDP programs do not re-enter on one CPU.
        unsafe { *c += 1 };
    }
}

/// The UDP destination port of an IPv4 datagram, network order; None for anything else.
#[inline(always)]
fn udp_dst_port(ctx: &XdpContext) -> Option<u16> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_LEN + 20 > end {
        return None;
    }
    // SAFETY: every read below is bounds-checked against data_end first (the verifier insists).
    let ethertype = unsafe { core::ptr::read_unaligned((start + 12) as *const u16) };
    if ethertype != ETH_P_IP_BE {
        return None;
    }
    let ip = start + ETH_LEN;
    let ihl = (unsafe { *(ip as *const u8) } & 0x0f) as usize * 4;
    let protocol = unsafe { *((ip + 9) as *const u8) };
    if protocol != IPPROTO_UDP || ihl < 20 {
        return None;
    }
    let udp = ip + ihl;
    if udp + UDP_LEN > end {
        return None;
    }
    Some(unsafe { core::ptr::read_unaligned((udp + 2) as *const u16) })
}

#[xdp]
pub fn xdp_echo_redirect(ctx: XdpContext) -> u32 {
    // SAFETY: plain read of a load-time constant.
    let port = unsafe { core::ptr::read_volatile(&XDP_ECHO_PORT_BE) };
    if udp_dst_port(&ctx) != Some(port) {
        count(xdp_counter::PASSED);
        return xdp_action::XDP_PASS;
    }
    // Without a socket on this queue the redirect fails: drop (the echo port is the model's).
    match XSKS.redirect(ctx.rx_queue_index(), 0) {
        Ok(action) => {
            count(xdp_counter::REDIRECTED);
            action
        }
        Err(_) => {
            count(xdp_counter::DROPPED);
            xdp_action::XDP_DROP
        }
    }
}
