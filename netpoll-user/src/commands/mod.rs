//! The commands of the `netpoll` CLI, each a short sequence of named steps over the engines
//! (`probes`, `workloads`, `load`) beside this folder.

pub mod compare;
pub mod export;
pub mod load;
pub mod micro;
pub mod profile;
pub mod report;
pub mod run;
pub mod serve;
pub mod targets;

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use netpoll_ebpf::abi::HookKind;

/// Where results go and how the probes attach: shared by `profile` and `run`.
#[derive(clap::Args)]
pub struct ResultsArgs {
    /// Write the full results (every bucket and counter) as JSON; see docs/results-format.md.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write charts and a report (and results.json) into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Hook kind to use (default: the cheapest the kernel accepts: tp-btf, raw-tp, tracepoint).
    #[arg(long, value_parser = hook_kind())]
    pub hook: Option<HookKind>,
    /// Do not print the report, nor a progress bar (with --json or --out).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--stacks` and `--kernel-stacks`: shared by `profile` and `run`.
#[derive(clap::Args)]
pub struct StackArgs {
    /// Where the calls are made: at the exit of every measured call of the targets, the
    /// kernel walks the caller's user stack (frame pointers), and the calls are summed by
    /// stack and class in the kernel: counts, latency, errors and EAGAINs, with --sched the
    /// on-CPU/blocked/run-queue split. Named in user space (ELF symbols, DWARF, demangled)
    /// into folded stacks and flame graphs (--out DIR: DIR/stacks/), the top stacks in the
    /// terminal and the JSON. Costs a stack walk per measured call of the targets (see
    /// docs/stacks.md); code built without frame pointers gives short stacks.
    #[arg(long)]
    pub stacks: bool,
    /// --stacks, plus the kernel stack where each call first left the CPU (where it blocked,
    /// or was preempted): one more walk per context switch inside a call.
    #[arg(long)]
    pub kernel_stacks: bool,
    /// The kernel's table of (process, syscall, stacks) entries: for tests of a full table.
    #[arg(long, hide = true, value_name = "ENTRIES", default_value_t = netpoll_ebpf::abi::MAX_STACK_KEYS)]
    pub stack_table: u32,
}

impl StackArgs {
    pub fn walk(&self) -> Option<crate::probes::StackWalk> {
        crate::probes::StackWalk::from_flags(self.stacks, self.kernel_stacks, self.stack_table)
    }
}

/// `--hook`: the ABI's hook kinds by their command-line names.
pub fn hook_kind() -> impl clap::builder::TypedValueParser<Value = HookKind> {
    PossibleValuesParser::new(HookKind::ALL.map(HookKind::cli_name)).map(|name| {
        HookKind::ALL
            .into_iter()
            .find(|k| k.cli_name() == name)
            .unwrap_or(HookKind::TpBtf)
    })
}
