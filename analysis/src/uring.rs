//! The io_uring view of a results file (`--uring`): each request's path through io_uring
//! (inline, poll, io-wq), by operation, with its latency and phases. Documented in
//! docs/results-format.md.

use serde::{Deserialize, Serialize};

use crate::Histogram;

/// The `uring` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Uring {
    /// By operation, then path; only those with completions or requests.
    pub requests: Vec<UringRequests>,
    /// Requests submitted by the targets and followed.
    pub submitted: u64,
    /// Poll requests armed again before completing (woken with nothing to do yet).
    pub rearmed: u64,
    /// Completions in the targets of requests submitted before netpoll attached (without their
    /// operation), and how long after the attach they came: lower bounds of their latency.
    pub unfollowed: u64,
    #[serde(default)]
    pub unfollowed_sum_ns: u64,
    #[serde(default, skip_serializing_if = "Histogram::is_empty")]
    pub unfollowed_ns: Histogram,
    /// Requests followed and not completed when the collection ended (waiting still, or
    /// never to post a completion: IOSQE_CQE_SKIP_SUCCESS).
    pub in_flight: u64,
    /// Completions in the targets posted without their request: a multishot request's
    /// intermediate ones on kernels that post them as auxiliary completions. Counted, not
    /// timed (the request's last completion is).
    #[serde(default)]
    pub aux_completions: u64,
    /// io_uring's own threads in the targets (io-wq workers, SQPOLL threads): their time from
    /// /proc's per-thread scheduler statistics over the collection (process targets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<UringThreads>,
}

/// io_uring's kernel threads of the targets: what they ran and waited for a CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UringThreads {
    /// `iou-wrk-*`: io-wq workers (requests handed to io-wq run there).
    pub io_wq: ThreadTime,
    /// `iou-sqp-*`: SQPOLL threads (they submit, and spin while there is work).
    pub sqpoll: ThreadTime,
}

/// Threads of one kind over a collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadTime {
    /// Threads seen.
    pub threads: u64,
    /// Time on a CPU, and runnable but waiting for one (schedstat), ns.
    pub on_cpu_ns: u64,
    pub runq_ns: u64,
}

/// Requests of one operation that took one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UringRequests {
    /// `recv`, `send`, `accept`, `read`, ... (`other` for operations netpoll does not name).
    pub op: String,
    /// `inline`, `poll`, `io-wq` or `deferred`.
    pub path: String,
    /// Requests finished (their last completion posted).
    pub requests: u64,
    /// Completions posted: one per request, several for a multishot one.
    pub completions: u64,
    /// Completions with a negative result, and of them -EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    /// Requests submitted by the ring's SQPOLL thread rather than by `io_uring_enter`.
    pub sqpoll: u64,
    /// From submission (for a multishot request's later completions: from the one before) to
    /// the completion's posting.
    pub latency_sum_ns: u64,
    pub latency_ns: Histogram,
    /// poll: from arming to the file's readiness (waiting for the socket); io-wq: from being
    /// queued to completion (waiting for a worker, then working).
    pub waits: u64,
    pub wait_sum_ns: u64,
    pub wait_ns: Histogram,
    /// poll: from readiness to completion: the task work waiting for its thread, then running
    /// (io_uring's run-queue delay).
    pub task_works: u64,
    pub task_work_sum_ns: u64,
    pub task_work_ns: Histogram,
}

impl UringRequests {
    pub fn mean_ns(&self) -> f64 {
        self.latency_sum_ns as f64 / self.completions.max(1) as f64
    }

    pub fn since(&self, e: &UringRequests) -> UringRequests {
        UringRequests {
            op: self.op.clone(),
            path: self.path.clone(),
            requests: self.requests.saturating_sub(e.requests),
            completions: self.completions.saturating_sub(e.completions),
            errors: self.errors.saturating_sub(e.errors),
            eagain: self.eagain.saturating_sub(e.eagain),
            sqpoll: self.sqpoll.saturating_sub(e.sqpoll),
            latency_sum_ns: self.latency_sum_ns.saturating_sub(e.latency_sum_ns),
            latency_ns: self.latency_ns.since(&e.latency_ns),
            waits: self.waits.saturating_sub(e.waits),
            wait_sum_ns: self.wait_sum_ns.saturating_sub(e.wait_sum_ns),
            wait_ns: self.wait_ns.since(&e.wait_ns),
            task_works: self.task_works.saturating_sub(e.task_works),
            task_work_sum_ns: self.task_work_sum_ns.saturating_sub(e.task_work_sum_ns),
            task_work_ns: self.task_work_ns.since(&e.task_work_ns),
        }
    }

    fn merge(&mut self, o: &UringRequests) {
        self.requests += o.requests;
        self.completions += o.completions;
        self.errors += o.errors;
        self.eagain += o.eagain;
        self.sqpoll += o.sqpoll;
        self.latency_sum_ns += o.latency_sum_ns;
        self.latency_ns.merge(&o.latency_ns);
        self.waits += o.waits;
        self.wait_sum_ns += o.wait_sum_ns;
        self.wait_ns.merge(&o.wait_ns);
        self.task_works += o.task_works;
        self.task_work_sum_ns += o.task_work_sum_ns;
        self.task_work_ns.merge(&o.task_work_ns);
    }

    fn is_empty(&self) -> bool {
        self.requests == 0 && self.completions == 0
    }
}

/// The paths, in the order they are shown (the ABI's names).
pub const PATHS: [&str; 4] = netpoll_ebpf::abi::URING_PATHS;

impl Uring {
    /// Rows with something in them (a snapshot reads every slot).
    pub fn from_rows(rows: Vec<UringRequests>) -> Vec<UringRequests> {
        rows.into_iter().filter(|r| !r.is_empty()).collect()
    }

    /// Every operation's requests of one path, summed (`op` is `all`).
    pub fn path(&self, path: &str) -> Option<UringRequests> {
        let mut rows = self.requests.iter().filter(|r| r.path == path);
        let mut total = rows.next()?.clone();
        rows.for_each(|r| total.merge(r));
        total.op = "all".into();
        Some(total)
    }

    /// Finished requests of all paths.
    pub fn finished(&self) -> u64 {
        self.requests.iter().map(|r| r.requests).sum()
    }

    /// The share of finished requests that took each path, in [`PATHS`] order, in %.
    pub fn path_shares(&self) -> [(&'static str, f64); 4] {
        let all = self.finished().max(1) as f64;
        PATHS.map(|p| {
            let n = self.path(p).map_or(0, |r| r.requests);
            (p, 100.0 * n as f64 / all)
        })
    }

    /// What happened since `earlier` (a measurement window); `in_flight` is the later's.
    pub fn since(&self, earlier: &Uring) -> Uring {
        let requests = self
            .requests
            .iter()
            .map(|r| {
                match earlier
                    .requests
                    .iter()
                    .find(|e| e.op == r.op && e.path == r.path)
                {
                    Some(e) => r.since(e),
                    None => r.clone(),
                }
            })
            .filter(|r| !r.is_empty())
            .collect();
        Uring {
            requests,
            submitted: self.submitted.saturating_sub(earlier.submitted),
            rearmed: self.rearmed.saturating_sub(earlier.rearmed),
            unfollowed: self.unfollowed.saturating_sub(earlier.unfollowed),
            unfollowed_sum_ns: self
                .unfollowed_sum_ns
                .saturating_sub(earlier.unfollowed_sum_ns),
            unfollowed_ns: self.unfollowed_ns.since(&earlier.unfollowed_ns),
            in_flight: self.in_flight,
            aux_completions: self.aux_completions.saturating_sub(earlier.aux_completions),
            threads: self.threads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &str, path: &str, requests: u64, latencies: &[u64]) -> UringRequests {
        let mut h = Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS);
        latencies.iter().for_each(|&v| h.record(v));
        UringRequests {
            op: op.into(),
            path: path.into(),
            requests,
            completions: latencies.len() as u64,
            errors: 0,
            eagain: 0,
            sqpoll: 0,
            latency_sum_ns: latencies.iter().sum(),
            latency_ns: h.clone(),
            waits: 0,
            wait_sum_ns: 0,
            wait_ns: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
            task_works: 0,
            task_work_sum_ns: 0,
            task_work_ns: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
        }
    }

    #[test]
    fn paths_sum_their_operations_and_windows_subtract() {
        let u = Uring {
            requests: vec![
                row("recv", "inline", 6, &[1, 2, 3, 4, 5, 6]),
                row("recv", "poll", 3, &[10, 20, 30]),
                row("send", "inline", 1, &[7]),
            ],
            submitted: 10,
            ..Uring::default()
        };
        let inline = u.path("inline").unwrap();
        assert_eq!((inline.requests, inline.completions), (7, 7));
        assert_eq!(u.path("io-wq"), None);
        let shares = u.path_shares();
        assert_eq!(shares[0], ("inline", 70.0));
        assert_eq!(shares[1], ("poll", 30.0));
        let earlier = Uring {
            requests: vec![row("recv", "inline", 2, &[1, 2])],
            submitted: 2,
            ..Uring::default()
        };
        let w = u.since(&earlier);
        assert_eq!(w.requests[0].requests, 4);
        assert_eq!(w.requests[0].latency_ns.total(), 4);
        assert_eq!((w.requests.len(), w.submitted), (3, 8));
    }
}
