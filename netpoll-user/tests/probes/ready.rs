//! The readiness-to-service view (`--ready`) against fixtures whose delays are known: a loop
//! that services its ready sockets in order with a known gap between them, and one that leaves
//! a ready socket alone for a known number of turns.

use super::*;
use fixture::{IGNORED_TURNS, READY_GAP_MS, READY_ROUNDS, READY_SOCKETS, TURN_MS};

/// Delays in `[low, high)` ns (buckets are up to 3 % wide: those overlapping it).
fn between(h: &analysis::Histogram, low: u64, high: u64) -> u64 {
    h.buckets()
        .filter(|&(lo, hi, _)| hi >= low && lo < high)
        .map(|(_, _, n)| n)
        .sum()
}

pub fn ready_sockets_serviced_in_order_wait_a_gap_each() -> TestResult {
    let run = profile_fixture(Scenario::ReadyInOrder, &["--ready"]);
    let r = run.results();
    let ready = r.ready.as_ref().ok_or("no ready section")?;
    let reads = ready.delays.get("read").ok_or("no read delays")?;
    let rounds = READY_ROUNDS as u64;
    check(
        reads.count == READY_SOCKETS as u64 * rounds && ready.unmapped == 0 && ready.not_read == 0,
        format!("{ready:?}"),
    )?;
    // The k-th socket of a round waited k gaps (and a little: the sleep's own overshoot).
    let gap = READY_GAP_MS * MS;
    for k in 0..READY_SOCKETS as u64 {
        let (low, high) = if k == 0 {
            (0, MS)
        } else {
            (k * gap, k * gap + 3 * MS)
        };
        let n = between(&reads.histogram, low, high);
        check(
            n == rounds,
            format!(
                "{n} delays in [{low}, {high}) ns, expected {rounds}: {:?}",
                reads.histogram
            ),
        )?;
    }
    check(reads.deferred == 0, format!("deferred {}", reads.deferred))?;
    // A turn per round: from the wait's return to the next wait, about three gaps.
    let turns = between(
        &ready.turn_ns,
        3 * gap,
        3 * gap + 5 * MS * READY_SOCKETS as u64,
    );
    check(
        ready.turns == rounds && turns == rounds && ready.turn_events == 4 * rounds,
        format!("turns {} {:?}", ready.turns, ready.turn_ns),
    )
}

pub fn a_ready_socket_left_alone_is_reported_again_and_deferred() -> TestResult {
    // Its registrations were made before netpoll attached: read from fdinfo.
    let run = profile_fixture(Scenario::ReadyIgnored, &["--ready"]);
    let r = run.results();
    let ready = r.ready.as_ref().ok_or("no ready section")?;
    check(
        ready.seeded_registrations == 2 && ready.unmapped == 0,
        format!("{ready:?}"),
    )?;
    let reads = ready.delays.get("read").ok_or("no read delays")?;
    let turns = IGNORED_TURNS as u64;
    // A: read at once each turn. B: read after IGNORED_TURNS turns of TURN_MS.
    let prompt = between(&reads.histogram, 0, MS);
    let late = between(
        &reads.histogram,
        turns * TURN_MS * MS,
        (turns * TURN_MS + 5) * MS,
    );
    check(
        reads.count == turns + 2 && prompt == turns + 1 && late == 1,
        format!("{reads:?}"),
    )?;
    // B was reported again by each later wait before it was read, and read only after its
    // waiter had waited again.
    check(
        ready.reported_again == turns && reads.deferred == 1,
        format!("again {} deferred {}", ready.reported_again, reads.deferred),
    )
}

pub fn bogus_pointers_and_reused_descriptors_give_no_wrong_delay() -> TestResult {
    let run = profile_fixture(Scenario::ReadyBadInput, &["--ready"]);
    let r = run.results();
    let ready = r.ready.as_ref().ok_or("no ready section")?;
    let count = |name: &str| ready.delays.get(name).map_or(0, |d| d.count);
    // One report (the socket closed unread: its close ends it); the reused descriptor's read
    // was never reported, so it ends nothing.
    check(
        ready.stamped == 1 && count("close") == 1 && count("read") == 0 && ready.pending == 0,
        format!("{ready:?}"),
    )
}
