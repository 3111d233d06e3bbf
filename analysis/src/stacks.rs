//! Where the calls were made (`--stacks`): the measured calls of the targets by call stack and
//! syscall class, with their counts, latency and (with `--sched`) its split, and what is made
//! of them: folded stacks (flamegraph.pl, inferno, speedscope and Grafana read them) and
//! flame graphs. Documented in docs/results-format.md and docs/stacks.md.

use std::{fmt::Write as _, fs, io, path::Path};

use serde::{Deserialize, Serialize};

/// The `stacks` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stacks {
    /// Kernel stacks were taken too (`--kernel-stacks`): each stack's frames then go on into
    /// the kernel, after its syscall's frame.
    pub kernel: bool,
    /// The scheduler view was on: the stacks carry the latency split.
    pub sched: bool,
    /// By (class, syscall, frames), heaviest (total latency) first.
    pub stacks: Vec<CallStack>,
    /// Measured calls the stacks could not place, by why; each is still counted in the
    /// results' totals.
    pub lost: Lost,
    /// What the stacks cannot show, per binary (frames cut short where a binary keeps no
    /// frame pointers, binaries without symbols, deleted files), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Calls without a (whole) stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// `STACK_STATS` was full: the call is in no stack.
    pub table_full: u64,
    /// The stack's bucket in the kernel's stack map held another stack (a hash collision):
    /// the call is under a `[stack lost]` frame.
    pub collisions: u64,
    /// The kernel could not walk the user stack (no user stack: a kernel thread; or the
    /// stack map failed otherwise): under `[stack lost]` too.
    pub unwalked: u64,
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.table_full + self.collisions + self.unwalked
    }
}

/// The measured calls of one class and syscall made from one call stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStack {
    /// The results' class (`socket_read`, `epoll`, ...).
    pub class: String,
    /// The syscall (`read`, `epoll_wait`, ...).
    pub syscall: String,
    /// Outermost caller first, innermost last (as in folded stacks): user frames, then
    /// `[syscall]`, then kernel frames if taken. Frames are function names (with inlined
    /// functions as frames of their own), `module+0xoffset` where a binary has no symbol for
    /// the address, `[anon]` for anonymous executable memory (JIT code), `[unknown]` outside
    /// any mapping; `[incomplete]` first when the walk stopped early (see [`Self::complete`]).
    pub frames: Vec<String>,
    /// The walk reached a thread's first frame (`_start`, `clone`, a thread start routine,
    /// Go's `goexit`/`mstart`...) without an unlikely frame on the way.
    pub complete: bool,
    /// The caller of the frameless syscall wrapper was recovered from the stack pointer (the
    /// frame-pointer walk skips it).
    pub recovered_caller: bool,
    /// Processes whose calls these are.
    pub pids: Vec<u32>,
    pub calls: u64,
    /// Calls that returned an error, and of them EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    pub latency_sum_ns: u64,
    /// With `--sched`: the latency split into on CPU, blocked and waiting for a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<StackSched>,
}

/// A stack's latency split (`--sched`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSched {
    pub on_cpu_ns: u64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
}

/// What a flame graph weighs each stack by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Calls,
    LatencyNs,
    OnCpuNs,
    BlockedNs,
    RunqNs,
}

impl Weight {
    pub const ALL: [Weight; 5] = [
        Weight::Calls,
        Weight::LatencyNs,
        Weight::OnCpuNs,
        Weight::BlockedNs,
        Weight::RunqNs,
    ];

    /// As in the file names (`socket_read.latency_ns.folded`).
    pub fn name(self) -> &'static str {
        match self {
            Weight::Calls => "calls",
            Weight::LatencyNs => "latency_ns",
            Weight::OnCpuNs => "on_cpu_ns",
            Weight::BlockedNs => "blocked_ns",
            Weight::RunqNs => "runq_ns",
        }
    }

    /// What the flame graph's widths are (its subtitle, and the count's name).
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Weight::Calls => ("calls", "calls"),
            Weight::LatencyNs => ("time inside the calls", "ns"),
            Weight::OnCpuNs => ("time on CPU inside the calls", "ns"),
            Weight::BlockedNs => ("time asleep (blocked) inside the calls", "ns"),
            Weight::RunqNs => ("time waiting for a CPU inside the calls", "ns"),
        }
    }

    /// Needs the scheduler view.
    pub fn needs_sched(self) -> bool {
        matches!(self, Weight::OnCpuNs | Weight::BlockedNs | Weight::RunqNs)
    }

    pub fn of(self, s: &CallStack) -> u64 {
        let sched = s.sched.unwrap_or_default();
        match self {
            Weight::Calls => s.calls,
            Weight::LatencyNs => s.latency_sum_ns,
            Weight::OnCpuNs => sched.on_cpu_ns,
            Weight::BlockedNs => sched.blocked_ns,
            Weight::RunqNs => sched.runq_ns,
        }
    }
}

impl CallStack {
    /// The stack's line in a folded file: frames joined by `;`, a space, the weight. A `;` in
    /// a frame (never in a symbol name, but possible in a file name) would split it: it is
    /// replaced by `:`.
    pub fn folded_line(&self, weight: Weight) -> String {
        let frames: Vec<String> = self.frames.iter().map(|f| f.replace(';', ":")).collect();
        format!("{} {}", frames.join(";"), weight.of(self))
    }
}

impl Stacks {
    /// The classes with stacks, in the order of their total latency.
    pub fn classes(&self) -> Vec<String> {
        let mut classes: Vec<(String, u64)> = Vec::new();
        for s in &self.stacks {
            match classes.iter_mut().find(|(c, _)| *c == s.class) {
                Some((_, sum)) => *sum += s.latency_sum_ns,
                None => classes.push((s.class.clone(), s.latency_sum_ns)),
            }
        }
        classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        classes.into_iter().map(|(c, _)| c).collect()
    }

    /// The weights this section has (the scheduler split only with `--sched`).
    pub fn weights(&self) -> Vec<Weight> {
        Weight::ALL
            .into_iter()
            .filter(|w| self.sched || !w.needs_sched())
            .collect()
    }

    /// The folded stacks of a class (or of every class, `None`), weighed by `weight`; stacks
    /// of weight 0 are left out (a flame graph cannot draw them).
    pub fn folded(&self, class: Option<&str>, weight: Weight) -> String {
        let mut out = String::new();
        for s in self
            .stacks
            .iter()
            .filter(|s| class.is_none_or(|c| s.class == c) && weight.of(s) > 0)
        {
            let _ = writeln!(out, "{}", s.folded_line(weight));
        }
        out
    }

    /// Writes `dir/<class>.<weight>.folded` and `dir/<class>.<weight>.svg` for every class and
    /// weight (and `all.<weight>.*` over every class); returns the files written.
    pub fn write(&self, dir: &Path, title: &str) -> io::Result<Vec<String>> {
        fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut classes: Vec<Option<String>> = self.classes().into_iter().map(Some).collect();
        classes.push(None);
        for class in &classes {
            for weight in self.weights() {
                let folded = self.folded(class.as_deref(), weight);
                let stem = format!("{}.{}", class.as_deref().unwrap_or("all"), weight.name());
                fs::write(dir.join(format!("{stem}.folded")), &folded)?;
                written.push(format!("{stem}.folded"));
                if folded.is_empty() {
                    continue;
                }
                let svg = flame_graph(
                    &folded,
                    &format!("{title}: {}", class.as_deref().unwrap_or("every class")),
                    weight,
                )?;
                fs::write(dir.join(format!("{stem}.svg")), svg)?;
                written.push(format!("{stem}.svg"));
            }
        }
        Ok(written)
    }
}

/// An interactive SVG flame graph of folded stacks (inferno: search, zoom, tooltips).
pub fn flame_graph(folded: &str, title: &str, weight: Weight) -> io::Result<Vec<u8>> {
    let (what, unit) = weight.describe();
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.subtitle = Some(format!("width: {what}"));
    options.count_name = unit.to_string();
    options.colors =
        inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Io);
    // The same colour for the same function in every graph: comparable side by side.
    options.hash = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)
        .map_err(|e| io::Error::other(format!("drawing the flame graph: {e}")))?;
    Ok(svg)
}

/// Frames of a stack innermost first (as bpftrace prints `ustack`), for the terminal.
pub fn innermost_first(s: &CallStack) -> impl Iterator<Item = &str> {
    s.frames.iter().rev().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(class: &str, frames: &[&str], calls: u64, latency: u64) -> CallStack {
        CallStack {
            class: class.into(),
            syscall: "read".into(),
            frames: frames.iter().map(|f| f.to_string()).collect(),
            complete: true,
            calls,
            latency_sum_ns: latency,
            ..CallStack::default()
        }
    }

    #[test]
    fn folded_lines_go_outermost_first_with_their_weight() {
        let s = Stacks {
            stacks: vec![
                stack(
                    "socket_read",
                    &["main", "serve", "read", "[read]"],
                    100,
                    5_000,
                ),
                stack(
                    "socket_read",
                    &["main", "slow", "read", "[read]"],
                    10,
                    200_000_000,
                ),
                stack(
                    "epoll",
                    &["main", "loop", "epoll_wait", "[epoll_wait]"],
                    7,
                    9,
                ),
            ],
            ..Stacks::default()
        };
        assert_eq!(
            s.folded(Some("socket_read"), Weight::Calls),
            "main;serve;read;[read] 100\nmain;slow;read;[read] 10\n"
        );
        assert_eq!(
            s.folded(Some("socket_read"), Weight::LatencyNs),
            "main;serve;read;[read] 5000\nmain;slow;read;[read] 200000000\n"
        );
        assert_eq!(s.folded(None, Weight::Calls).lines().count(), 3);
        // By total latency.
        assert_eq!(s.classes(), vec!["socket_read", "epoll"]);
        // No scheduler view: no split weights, and none drawn at 0.
        assert_eq!(s.weights(), vec![Weight::Calls, Weight::LatencyNs]);
        assert_eq!(s.folded(None, Weight::BlockedNs), "");
    }

    #[test]
    fn a_semicolon_in_a_frame_does_not_split_it() {
        let s = stack("socket_read", &["a;b", "c"], 1, 1);
        assert_eq!(s.folded_line(Weight::Calls), "a:b;c 1");
    }

    #[test]
    fn flame_graphs_and_folded_files_are_written_per_class_and_weight() {
        let dir = std::env::temp_dir().join(format!("netpoll-stacks-{}", std::process::id()));
        let s = Stacks {
            sched: true,
            stacks: vec![CallStack {
                sched: Some(StackSched {
                    on_cpu_ns: 10,
                    blocked_ns: 90,
                    runq_ns: 0,
                }),
                ..stack("socket_read", &["main", "read"], 2, 100)
            }],
            ..Stacks::default()
        };
        let written = s.write(&dir, "test").unwrap();
        for file in [
            "socket_read.calls.folded",
            "socket_read.latency_ns.svg",
            "socket_read.blocked_ns.svg",
            "all.on_cpu_ns.folded",
        ] {
            assert!(written.iter().any(|w| w == file), "{file} in {written:?}");
        }
        // Nothing waited for a CPU: an empty folded file, no graph.
        assert!(!written.iter().any(|w| w == "socket_read.runq_ns.svg"));
        let svg = fs::read_to_string(dir.join("socket_read.blocked_ns.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("main") && svg.contains("90 ns"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
