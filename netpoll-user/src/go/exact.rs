//! `--go-exact`: every goroutine's network park, wake-up by netpoll and start on a thread, and
//! the Ps handed off when a thread blocks, from uprobes on four runtime functions
//! (`netpoll_ebpf::abi::GO_EXACT_HOOKS`). Exact, but each hit is a trap into the kernel (12-14 µs
//! on the machines netpoll is developed on), so it is opt-in, measured when it starts, and its
//! cost is written into the results.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
};

use analysis::{Histogram, chart::style::fmt_ns, go::GoExact};
use anyhow::{Context as _, Result};
use netpoll_ebpf::abi::GO_EXACT_HOOKS;

use super::{Inspected, binary::GoBinary, runtime::polldesc_offsets};
use crate::probes::{
    Probes,
    go::{ExactCounts, UprobeSite},
};

/// What `--go-exact` attaches to one process, worked out from its binary.
pub struct Plan {
    pub pid: u32,
    /// The file the uprobes go on: the command's executable (before it runs), or
    /// /proc/PID/exe (the running copy, even when replaced on disk).
    path: PathBuf,
    /// Offsets of `rg` and `wg` in `runtime.pollDesc`.
    polldesc: (u32, u32),
    sites: Vec<UprobeSite>,
    /// One hit's cost, measured when attached.
    cost_per_hit_ns: u64,
}

impl Plan {
    /// For process `pid`, about to exec `path` (a command not yet released); one line when it
    /// cannot be done.
    pub fn prepare(pid: u32, path: &Path) -> Result<Plan> {
        let data = fs::read(path)
            .with_context(|| format!("cannot read {} (did it exit?)", path.display()))?;
        let shown = fs::read_link(path).unwrap_or_else(|_| path.to_path_buf());
        let binary = GoBinary::parse(&data, &shown.display().to_string())?;
        Plan::of(pid, path, &binary)
    }

    /// For process `pid` as it runs (once it has exec'd its binary: waited for a moment).
    pub fn prepare_running(pid: u32) -> Result<Plan> {
        let (binary, _) = super::inspect(pid, &AtomicBool::new(false))?;
        Plan::of(pid, Path::new(&format!("/proc/{pid}/exe")), &binary)
    }

    fn of(pid: u32, path: &Path, binary: &GoBinary) -> Result<Plan> {
        let polldesc = polldesc_offsets(binary)?;
        let sites = GO_EXACT_HOOKS
            .iter()
            .map(|&(program, function)| {
                let f = binary.function(function).with_context(|| {
                    format!(
                        "{} has no function {function} in its .gopclntab: not a Go runtime netpoll knows",
                        binary.path
                    )
                })?;
                Ok(UprobeSite {
                    program,
                    file_offset: f.file_offset,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Plan {
            pid,
            path: path.to_path_buf(),
            polldesc,
            sites,
            cost_per_hit_ns: 0,
        })
    }

    /// Measures what a hit costs now, attaches the uprobes, and says so.
    pub fn attach(&mut self, probes: &mut Probes) -> Result<()> {
        self.cost_per_hit_ns = probes
            .uprobe_hit_cost()
            .context("--go-exact: measuring a uprobe hit")?;
        probes.attach_go_exact(self.pid, &self.path, &self.sites, self.polldesc)?;
        let functions: Vec<&str> = GO_EXACT_HOOKS.iter().map(|(_, f)| *f).collect();
        eprintln!(
            "netpoll: --go-exact: uprobes on {} of PID {}; one hit costs {} here (measured now), \
             paid by the process at every call",
            functions.join(", "),
            self.pid,
            fmt_ns(self.cost_per_hit_ns as f64)
        );
        Ok(())
    }

    /// The `go.exact` section, from the programs' maps (what they counted since `before`, if
    /// given); `inspected` names the callers.
    pub fn results(
        &self,
        probes: &Probes,
        inspected: &Inspected,
        before: Option<&ExactCounts>,
    ) -> Result<GoExact> {
        let now = probes.go_exact_counts()?;
        let ExactCounts {
            counts,
            handoffs: callers,
        } = match before {
            Some(before) => now.since(before),
            None => now,
        };
        let mut handoffs = BTreeMap::new();
        for (address, count) in callers {
            let name = inspected
                .function_at(address)
                .map_or_else(|| format!("{address:#x}"), str::to_string);
            *handoffs.entry(name).or_insert(0) += count;
        }
        let handed: u64 = handoffs.values().sum();
        Ok(GoExact {
            functions: GO_EXACT_HOOKS.iter().map(|(_, f)| f.to_string()).collect(),
            cost_per_hit_ns: self.cost_per_hit_ns,
            hits: counts.parks + counts.ready_calls + counts.executes + handed,
            parks: counts.parks,
            ready_calls: counts.ready_calls,
            wakes: counts.wakes,
            wakes_of_seen_parks: counts.wakes_of_seen_parks,
            runs_after_wake: counts.runs_after_wake,
            resumed_otherwise: counts.resumed_otherwise,
            executes: counts.executes,
            lost: counts.full,
            parked_ns: Histogram::from_counts(&counts.parked_ns),
            wake_to_run_ns: Histogram::from_counts(&counts.wake_to_run_ns),
            handoffs,
        })
    }
}
