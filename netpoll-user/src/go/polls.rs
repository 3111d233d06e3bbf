//! Who polls the network: each epoll_pwait of the Go process, attributed to the runtime
//! function that called netpoll, from the user stack taken at the call. The runtime polls from
//! the scheduler looking for work (`runtime.findRunnable`: without waiting, or blocking when
//! there is nothing else to do), from sysmon when nobody has polled for 10 ms
//! (`runtime.sysmon`: golang/go#51651's symptom when it is the only one), from the GC's idle
//! workers (`runtime.pollWork`) and when the world restarts (`runtime.startTheWorldWithSema`).

use std::collections::BTreeMap;

use analysis::go::{GoPolls, POLL_CHAIN};
use netpoll_ebpf::abi::poll_timeout;

use super::Inspected;
use crate::probes::go::PollSite;

/// The caller of a poll: the first named frame outside [`POLL_CHAIN`].
pub fn caller(frames: &[u64], inspected: &Inspected) -> String {
    if frames.is_empty() {
        return "(no stack)".into();
    }
    frames
        .iter()
        .map(|&ip| inspected.function_at(ip))
        .find(|name| !name.is_some_and(|n| POLL_CHAIN.contains(&n)))
        .flatten()
        .map_or_else(|| "(not Go code)".into(), str::to_string)
}

/// The polls counted since `before` (a snapshot of the same sites, taken earlier).
pub fn since(mut now: Vec<PollSite>, before: &[PollSite]) -> Vec<PollSite> {
    for site in &mut now {
        if let Some(old) = before.iter().find(|b| b.key == site.key) {
            site.stats.calls -= old.stats.calls.min(site.stats.calls);
            site.stats.events -= old.stats.events.min(site.stats.events);
            site.stats.empty -= old.stats.empty.min(site.stats.empty);
            site.stats.time_ns -= old.stats.time_ns.min(site.stats.time_ns);
        }
    }
    now.retain(|s| s.stats.calls > 0);
    now
}

/// The polls, by caller and timeout kind, most calls first.
pub fn by_caller(sites: &[PollSite], inspected: &Inspected) -> Vec<GoPolls> {
    let mut merged: BTreeMap<(String, &'static str), GoPolls> = BTreeMap::new();
    for site in sites {
        let timeout = match site.key.timeout {
            poll_timeout::BLOCKING => "blocking",
            poll_timeout::NON_BLOCKING => "non-blocking",
            _ => "timed",
        };
        let caller = caller(&site.frames, inspected);
        let entry = merged
            .entry((caller.clone(), timeout))
            .or_insert_with(|| GoPolls {
                caller,
                timeout: timeout.into(),
                ..GoPolls::default()
            });
        entry.calls += site.stats.calls;
        entry.events += site.stats.events;
        entry.empty += site.stats.empty;
        entry.time_ns += site.stats.time_ns;
    }
    let mut polls: Vec<GoPolls> = merged.into_values().collect();
    polls.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.caller.cmp(&b.caller)));
    polls
}
