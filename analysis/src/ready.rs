//! The readiness-to-service view of a results file (`--ready`): how long descriptors that a
//! wait reported ready waited before the process touched them, and the event loop's turns.
//! Documented in docs/results-format.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Histogram;

/// The `ready` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// By the call that ended the delay (`read`, `write`, `accept`, `close`, `epoll_ctl`).
    pub delays: BTreeMap<String, ReadyDelays>,
    /// Ready descriptors stamped (each reported by a wait and not already pending).
    pub stamped: u64,
    /// epoll events whose data matched no known registration (made before netpoll attached and
    /// missing from /proc/PID/fdinfo, or an epoll instance shared with another process).
    pub unmapped: u64,
    /// Ready events beyond the per-wait bound (64), or unreadable: not measured.
    pub not_read: u64,
    /// Reported ready again before being serviced (ignored or deferred; the first report's
    /// time is kept).
    pub reported_again: u64,
    /// Reports found stale: the read, write or accept that came next found nothing (EAGAIN):
    /// the descriptor had been serviced before the report was read (edge-triggered loops that
    /// read ahead). Not counted as delays.
    #[serde(default)]
    pub stale: u64,
    /// Stamped and not serviced when the collection ended.
    pub pending: u64,
    /// Registrations read from /proc/PID/fdinfo at attach (made before netpoll attached).
    pub seeded_registrations: u64,
    /// Loop turns: from a wait's return to the same thread's next wait.
    pub turns: u64,
    pub turn_sum_ns: u64,
    /// Ready events the turns' waits returned.
    pub turn_events: u64,
    pub turn_ns: Histogram,
}

/// The delays one kind of call ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyDelays {
    pub count: u64,
    pub sum_ns: u64,
    /// Serviced only after the thread that waited for it had waited again.
    pub deferred: u64,
    pub histogram: Histogram,
}

/// The calls that service a readable report: a request waiting to be read (or a connection
/// to be accepted). The headline figures use these; a writable report of a socket that is
/// always writable lasts until the server next has something to write, which is not a wait.
pub const READABLE_ENDERS: [&str; 2] = ["read", "accept"];

impl Ready {
    /// Delays of readable reports: ended by a read or an accept.
    pub fn readable_delays(&self) -> ReadyDelays {
        self.merged(|name| READABLE_ENDERS.contains(&name))
    }

    /// Every delay, whatever ended it.
    pub fn all_delays(&self) -> ReadyDelays {
        self.merged(|_| true)
    }

    fn merged(&self, wanted: impl Fn(&str) -> bool) -> ReadyDelays {
        let mut all = ReadyDelays {
            count: 0,
            sum_ns: 0,
            deferred: 0,
            histogram: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
        };
        for (_, d) in self.delays.iter().filter(|(name, _)| wanted(name)) {
            all.count += d.count;
            all.sum_ns += d.sum_ns;
            all.deferred += d.deferred;
            all.histogram.merge(&d.histogram);
        }
        all
    }

    /// What happened since `earlier` (a measurement window); `pending` and the seeded
    /// registrations are the later snapshot's.
    pub fn since(&self, earlier: &Ready) -> Ready {
        let delays = self
            .delays
            .iter()
            .map(|(name, d)| {
                let before = earlier.delays.get(name);
                let sub = |f: fn(&ReadyDelays) -> u64| f(d).saturating_sub(before.map_or(0, f));
                let histogram = match before {
                    Some(b) => d.histogram.since(&b.histogram),
                    None => d.histogram.clone(),
                };
                (
                    name.clone(),
                    ReadyDelays {
                        count: sub(|x| x.count),
                        sum_ns: sub(|x| x.sum_ns),
                        deferred: sub(|x| x.deferred),
                        histogram,
                    },
                )
            })
            .collect();
        Ready {
            delays,
            stamped: self.stamped.saturating_sub(earlier.stamped),
            unmapped: self.unmapped.saturating_sub(earlier.unmapped),
            not_read: self.not_read.saturating_sub(earlier.not_read),
            reported_again: self.reported_again.saturating_sub(earlier.reported_again),
            stale: self.stale.saturating_sub(earlier.stale),
            pending: self.pending,
            seeded_registrations: self.seeded_registrations,
            turns: self.turns.saturating_sub(earlier.turns),
            turn_sum_ns: self.turn_sum_ns.saturating_sub(earlier.turn_sum_ns),
            turn_events: self.turn_events.saturating_sub(earlier.turn_events),
            turn_ns: self.turn_ns.since(&earlier.turn_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(values: &[u64]) -> ReadyDelays {
        let mut histogram = Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS);
        for &v in values {
            histogram.record(v);
        }
        ReadyDelays {
            count: values.len() as u64,
            sum_ns: values.iter().sum(),
            deferred: 0,
            histogram,
        }
    }

    fn ready(read: &[u64], turns: u64) -> Ready {
        Ready {
            delays: [("read".to_string(), delays(read))].into(),
            stamped: read.len() as u64,
            unmapped: 0,
            not_read: 0,
            reported_again: 0,
            stale: 0,
            pending: 0,
            seeded_registrations: 0,
            turns,
            turn_sum_ns: 0,
            turn_events: 0,
            turn_ns: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
        }
    }

    #[test]
    fn a_window_is_the_difference_of_its_edges() {
        let window = ready(&[10, 20, 30], 7).since(&ready(&[10], 2));
        let all = window.all_delays();
        assert_eq!((all.count, all.sum_ns, window.turns), (2, 50, 5));
        assert_eq!(all.histogram.total(), 2);
    }
}
