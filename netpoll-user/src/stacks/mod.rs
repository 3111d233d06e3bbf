//! `--stacks` in user space: from the kernel's stacks (return addresses, by process) to named
//! call stacks. [`Images`] keeps each target process's executable mappings, with a descriptor
//! open on every file behind them, from the moment its first stack is seen: a process that
//! exits before the end, or a binary deleted while it runs, still names its frames. At the end,
//! [`Images::name`] checks each stack's frames, puts back the caller a frameless syscall
//! wrapper hides from the frame-pointer walk ([`cfa`] says where it is), names every address
//! with blazesym (ELF symbols, DWARF and its inlined functions, demangled) and sums the calls by
//! (class, syscall, frames).

mod cfa;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fs::File,
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileExt as _, MetadataExt as _},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use analysis::stacks::{CallStack, Lost, StackSched, Stacks};
use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Kernel, Source},
};
use netpoll_ebpf::{
    abi::{CodeKey, StackKey, StackStats, frame_rule, stacks::NOT_TAKEN, stacks::STAYED_ON_CPU},
    syscalls::{Class, SYSCALLS},
    x86::ends_with_call,
};

use self::cfa::{FrameInfo, ReturnAddress};
use crate::probes::{Probes, snapshot::slot_parts, stacks::RawStacks};

/// How often the collection loops look for processes with new stacks, and re-read the mappings
/// of those already kept: at every look for a process seen in its first seconds (the dynamic
/// loader maps its libraries after the exec), then less often (a library loaded later).
const POLL_EVERY: Duration = Duration::from_millis(200);
/// While it learns new frame rules (each look lets the kernel unwind one frame further), and
/// for a second after, it looks again sooner.
const POLL_LEARNING: Duration = Duration::from_millis(50);
const LEARNING_FOR: Duration = Duration::from_secs(1);
const YOUNG: Duration = Duration::from_secs(2);
const REREAD_EVERY: Duration = Duration::from_secs(2);
const EEXIST: i32 = 17;
/// The outermost frame of a stack whose walk did not reach a thread's first function.
const INCOMPLETE: &str = "[incomplete]";

/// Where a thread's stack begins: the walk reached one of these as its outermost frame (C
/// programs, threads, Go's goroutines and its threads' system stacks).
const THREAD_ROOTS: [&str; 14] = [
    "_start",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.mstart",
    "runtime.mcall",
    "runtime.rt0_go.abi0",
];

/// A file mapped executable into a target, kept open.
struct MappedFile {
    file: File,
    /// As /proc/PID/maps names it (` (deleted)` after it was removed).
    path: String,
    /// What blazesym opens: the path, while it still names this file (its debug link and
    /// build id then find separate debug files); else the open descriptor.
    source: PathBuf,
}

impl MappedFile {
    fn name(&self) -> &str {
        let path = self.path.trim_end_matches(" (deleted)");
        path.rsplit('/').next().unwrap_or(path)
    }

    /// The 8 bytes of the file before `offset`.
    fn bytes_before(&self, offset: u64) -> Option<[u8; 8]> {
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b, offset.checked_sub(8)?)
            .ok()?;
        Some(b)
    }
}

#[derive(Clone)]
enum Backing {
    File(Arc<MappedFile>),
    /// Anonymous executable memory: JIT code.
    Anon,
    /// `[vdso]`, `[vsyscall]`, `[uprobes]`; or a file that could not be opened.
    Named(String),
}

#[derive(Clone)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    backing: Backing,
}

#[derive(Default)]
struct Image {
    /// Sorted by start, not overlapping.
    mappings: Vec<Mapping>,
    first_read: Option<Instant>,
    read_at: Option<Instant>,
}

impl Image {
    fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.mappings.partition_point(|m| m.start <= addr);
        self.mappings[..i].last().filter(|m| addr < m.end)
    }

    /// Adds mappings read later: each replaces what it overlaps (an exec, an unmap and map).
    fn merge(&mut self, new: Vec<Mapping>) {
        for m in new {
            self.mappings
                .retain(|old| old.end <= m.start || m.end <= old.start);
            let i = self.mappings.partition_point(|old| old.start < m.start);
            self.mappings.insert(i, m);
        }
    }
}

/// One line of /proc/PID/maps.
#[derive(Debug, PartialEq, Eq)]
struct MapsLine<'a> {
    start: u64,
    end: u64,
    executable: bool,
    offset: u64,
    path: &'a str,
}

fn parse_maps(text: &str) -> Vec<MapsLine<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
            let (_dev, _inode) = (fields.next()?, fields.next()?);
            let path = fields.next().unwrap_or("").trim_start();
            let (start, end) = range.split_once('-')?;
            Some(MapsLine {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                executable: perms.as_bytes().get(2) == Some(&b'x'),
                offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// The target processes' executable mappings, kept from their first stack to the end; and
/// where each syscall instruction's wrapper keeps its return address, told to the kernel.
#[derive(Default)]
pub struct Images {
    processes: HashMap<u32, Image>,
    /// By (device, inode): one descriptor per file.
    files: HashMap<(u64, u64), Arc<MappedFile>>,
    last_poll: Option<Instant>,
    /// Processes gone before their mappings could be read.
    unread: BTreeSet<u32>,
    /// Call frame information, by file (`None`: unreadable).
    frame_info: HashMap<*const MappedFile, Option<FrameInfo>>,
    /// Frame rules, by (process, instruction, whether it is after a syscall).
    rules: HashMap<(u32, u64, bool), ReturnAddress>,
    /// `FRAME_RULES`, taken from the probes: the rules learnt, for the kernel to unwind with.
    frame_rules: Option<aya::maps::HashMap<aya::maps::MapData, CodeKey, u32>>,
    /// Instructions whose rule was looked at (told to the kernel, or none to tell).
    learnt: HashSet<(u32, u64)>,
    /// User stacks whose syscall instruction was looked at.
    leaves_seen: HashSet<(u32, i32)>,
    /// When a look last told the kernel new rules.
    learnt_at: Option<Instant>,
}

impl Images {
    /// For `probes` (taking the map of learnt frame rules from them).
    pub fn new(probes: &mut Probes) -> Images {
        Images {
            frame_rules: probes.take_frame_rules(),
            ..Images::default()
        }
    }

    /// Called by the collection loops: every [`POLL_EVERY`], keeps the mappings of processes
    /// with new stacks, and reads again those of the others every [`REREAD_EVERY`].
    pub fn poll(&mut self, probes: &Probes) {
        let every = if self.learnt_at.is_some_and(|t| t.elapsed() < LEARNING_FOR) {
            POLL_LEARNING
        } else {
            POLL_EVERY
        };
        if probes.mode.stacks().is_none() || self.last_poll.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_poll = Some(Instant::now());
        let keys = probes.stack_keys().unwrap_or_default();
        let mut pids: BTreeSet<u32> = keys.iter().map(|k| k.tgid).collect();
        pids.extend(self.processes.keys());
        for pid in pids {
            let stale = self.processes.get(&pid).is_none_or(|i| {
                let young = i.first_read.is_none_or(|t| t.elapsed() < YOUNG);
                let every = if young { POLL_EVERY } else { REREAD_EVERY };
                i.read_at.is_none_or(|t| t.elapsed() >= every)
            });
            if stale && !self.unread.contains(&pid) {
                self.read(pid);
            }
        }
        // The frame rules of the new stacks' syscall instructions and of the return addresses
        // unwound so far, for the kernel: each look lets it unwind further (a stack whose
        // process is not read yet is looked at again next time).
        for key in keys {
            let pid = key.tgid;
            if !self.processes.contains_key(&pid) {
                continue;
            }
            if key.user_stack >= 0
                && self.leaves_seen.insert((pid, key.user_stack))
                && let Some(&leaf) = probes
                    .stack_trace(key.user_stack)
                    .as_ref()
                    .and_then(|t| t.first())
            {
                self.learn(pid, leaf, true);
            }
            if key.unwound != 0 {
                for &ra in key.callers.iter().take_while(|&&ra| ra != 0) {
                    self.learn(pid, ra, false);
                }
            }
        }
    }

    /// Tells the kernel the frame rule of an instruction (once; again later if its mapping
    /// was not read yet).
    fn learn(&mut self, pid: u32, ip: u64, leaf: bool) {
        if self.learnt.contains(&(pid, ip)) {
            return;
        }
        let Some(rule) = self.rule(pid, ip, leaf) else {
            return;
        };
        self.learnt.insert((pid, ip));
        let rule = match rule {
            ReturnAddress::AboveSp(n) => n as u32 + 8,
            ReturnAddress::FramePointer => frame_rule::FRAME_POINTER,
            ReturnAddress::Unknown => return,
        };
        if let Some(map) = self.frame_rules.as_mut() {
            // Full: the kernel stops unwinding where it finds no rule.
            let key = CodeKey {
                tgid: pid,
                _pad: 0,
                ip,
            };
            if map.insert(key, rule, 0).is_ok() {
                self.learnt_at = Some(Instant::now());
            }
        }
    }

    /// The frame rule at `ip` in `pid`, from its file's call frame information. A file without
    /// any (Go's) keeps frame pointers: at a return address the frame-pointer walk is right;
    /// after a syscall, the wrapper keeps no frame (Go's `Syscall6`). Kept once known; `None`
    /// while the address is in no mapping read yet (a library the loader maps after the exec).
    fn rule(&mut self, pid: u32, ip: u64, leaf: bool) -> Option<ReturnAddress> {
        if let Some(&rule) = self.rules.get(&(pid, ip, leaf)) {
            return Some(rule);
        }
        let rule = match self.place(pid, ip) {
            Place::File(f, offset) => {
                let info = self
                    .frame_info
                    .entry(Arc::as_ptr(&f))
                    .or_insert_with(|| FrameInfo::load(&f.source));
                match info {
                    Some(info) if !info.has_cfi() && leaf => ReturnAddress::AboveSp(0),
                    Some(info) if !info.has_cfi() => ReturnAddress::FramePointer,
                    Some(info) => info
                        .address_of(offset)
                        .map_or(ReturnAddress::Unknown, |a| info.return_address(a)),
                    None => ReturnAddress::Unknown,
                }
            }
            Place::Anon | Place::Named(_) => ReturnAddress::Unknown,
            Place::Unmapped => return None,
        };
        self.rules.insert((pid, ip, leaf), rule);
        Some(rule)
    }

    /// Where an address is in a process, as far as naming and unwinding it go.
    fn place(&self, pid: u32, addr: u64) -> Place {
        let Some(m) = self.processes.get(&pid).and_then(|i| i.find(addr)) else {
            return Place::Unmapped;
        };
        match &m.backing {
            Backing::File(f) => Place::File(f.clone(), addr - m.start + m.offset),
            Backing::Anon => Place::Anon,
            Backing::Named(n) => Place::Named(n.clone()),
        }
    }

    /// Keeps the mappings of these processes from now on (the targets given, once they run
    /// their own program), before their first stack is seen: a target that exits quickly is
    /// named too.
    pub fn watch(&mut self, probes: &Probes, pids: &[u32]) {
        if probes.mode.stacks().is_none() {
            return;
        }
        for &pid in pids {
            self.read(pid);
        }
    }

    /// Reads (again) the executable mappings of `pid`, opening the files behind them.
    fn read(&mut self, pid: u32) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            if !self.processes.contains_key(&pid) {
                self.unread.insert(pid);
            }
            return;
        };
        let image = self.processes.entry(pid).or_default();
        let known = |m: &MapsLine| {
            image
                .find(m.start)
                .is_some_and(|k| k.start == m.start && k.end == m.end && k.offset == m.offset)
        };
        let mut new = Vec::new();
        for line in parse_maps(&text)
            .into_iter()
            .filter(|m| m.executable && !known(m))
        {
            let backing = match line.path {
                "" => Backing::Anon,
                p if p.starts_with('[') => Backing::Named(p.to_string()),
                p => match open_mapped(pid, &line, &mut self.files) {
                    Some(file) => Backing::File(file),
                    None => Backing::Named(p.to_string()),
                },
            };
            new.push(Mapping {
                start: line.start,
                end: line.end,
                offset: line.offset,
                backing,
            });
        }
        image.merge(new);
        image.read_at = Some(Instant::now());
        image.first_read.get_or_insert(Instant::now());
    }

    /// Names the stacks of a collection (or window): `raw` from the probes' snapshots, the
    /// addresses from the probes' stack map. Processes still alive are read once more first.
    pub fn name(&mut self, probes: &Probes, raw: &RawStacks, table_full: u64) -> Stacks {
        let sched = probes.mode.sched();
        let pids: BTreeSet<u32> = raw.keys().map(|k| k.tgid).collect();
        for &pid in &pids {
            self.read(pid);
        }
        let kernel = probes.mode.stacks().is_some_and(|s| s.kernel);
        let mut traces: HashMap<i32, Option<Vec<u64>>> = HashMap::new();
        let mut trace = |id: i32| {
            traces
                .entry(id)
                .or_insert_with(|| probes.stack_trace(id))
                .clone()
        };
        for key in raw.keys().filter(|k| k.user_stack >= 0) {
            if let Some(ips) = trace(key.user_stack) {
                if let Some(&leaf) = ips.first() {
                    self.rule(key.tgid, leaf, true);
                }
                let callers = key.callers.iter().take_while(|&&ra| ra != 0);
                for &ra in ips.iter().skip(1).chain(callers) {
                    self.rule(key.tgid, ra, false);
                }
            }
        }
        let mut namer = Namer::new(self);
        let mut lost = Lost {
            table_full,
            ..Lost::default()
        };
        let mut walks = Vec::new();
        for (key, stats) in raw {
            let user = (key.user_stack >= 0)
                .then(|| trace(key.user_stack))
                .flatten();
            if user.is_none() {
                if key.user_stack == -EEXIST {
                    lost.collisions += stats.calls;
                } else {
                    lost.unwalked += stats.calls;
                }
            }
            let walk = user.map(|ips| namer.walk(key, &ips));
            let kernel_ips = (key.kernel_stack >= 0)
                .then(|| trace(key.kernel_stack))
                .flatten();
            if let Some(ips) = &kernel_ips {
                namer.kernel_wanted.extend(ips);
            }
            walks.push((key, stats, walk, kernel_ips));
        }
        namer.symbolize();
        for (key, _, walk, _) in walks.iter_mut() {
            if let Some(w) = walk
                && let Some(at) = w.cut_at
                && namer.is_root(key.tgid, at)
            {
                w.ips.push(at);
                w.cut = false;
            }
        }
        let mut merged: BTreeMap<(String, String, Vec<String>), CallStack> = BTreeMap::new();
        for (key, stats, walk, kernel_ips) in walks {
            let (class, syscall) = class_of(key.slot);
            let mut frames = match &walk {
                Some(w) => namer.frames(key.tgid, w),
                None => vec!["[stack lost]".to_string()],
            };
            frames.push(format!("[{syscall}]"));
            if kernel {
                frames.extend(kernel_frames(key.kernel_stack, kernel_ips, &namer));
            }
            let entry = merged
                .entry((class.clone(), syscall.clone(), frames.clone()))
                .or_insert_with(|| CallStack {
                    class,
                    syscall,
                    frames,
                    complete: walk.as_ref().is_some_and(|w| namer.complete(key.tgid, w)),
                    recovered_caller: walk.as_ref().is_some_and(|w| w.recovered),
                    sched: sched.then(StackSched::default),
                    ..CallStack::default()
                });
            if !entry.pids.contains(&key.tgid) {
                entry.pids.push(key.tgid);
            }
            entry.calls += stats.calls;
            entry.errors += stats.errors;
            entry.eagain += stats.eagain;
            entry.latency_sum_ns += stats.latency_sum_ns;
            if let Some(s) = entry.sched.as_mut() {
                add_split(s, stats);
            }
        }
        let mut stacks: Vec<CallStack> = merged.into_values().collect();
        stacks.sort_by(|a, b| {
            b.latency_sum_ns
                .cmp(&a.latency_sum_ns)
                .then(b.calls.cmp(&a.calls))
        });
        let mut notes = namer.notes(&stacks);
        // Only those with calls in these stacks (a window leaves out processes gone before it).
        let gone: Vec<String> = self
            .unread
            .iter()
            .filter(|pid| pids.contains(pid))
            .map(u32::to_string)
            .collect();
        if !gone.is_empty() {
            let shown = gone.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            notes.push(format!(
                "{} process(es) (PID {shown}{}) exited within {} ms of their first call, before \
                 their mappings could be read: their frames are [unknown]",
                gone.len(),
                if gone.len() > 5 { ", ..." } else { "" },
                POLL_EVERY.as_millis()
            ));
        }
        Stacks {
            kernel,
            sched,
            stacks,
            lost,
            notes,
        }
    }
}

/// Opens the file behind a mapping (through /proc/PID/map_files, which works for a deleted
/// file too), once per file.
fn open_mapped(
    pid: u32,
    line: &MapsLine,
    files: &mut HashMap<(u64, u64), Arc<MappedFile>>,
) -> Option<Arc<MappedFile>> {
    let by_range = format!("/proc/{pid}/map_files/{:x}-{:x}", line.start, line.end);
    let file = File::open(&by_range)
        .or_else(|_| File::open(line.path))
        .ok()?;
    let meta = file.metadata().ok()?;
    let id = (meta.dev(), meta.ino());
    if let Some(known) = files.get(&id) {
        return Some(known.clone());
    }
    let same = |p: &Path| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id);
    let source = if same(Path::new(line.path)) {
        PathBuf::from(line.path)
    } else {
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    let mapped = Arc::new(MappedFile {
        file,
        path: line.path.to_string(),
        source,
    });
    files.insert(id, mapped.clone());
    Some(mapped)
}

/// The class and syscall of a slot.
fn class_of(slot: u32) -> (String, String) {
    let (index, socket, _) = slot_parts(slot as usize);
    let s = &SYSCALLS[index];
    let class = Class::of(s.family, s.kind.splits_by_socket().then_some(socket));
    (class.name().to_string(), s.name.to_string())
}

fn add_split(s: &mut StackSched, stats: &StackStats) {
    s.blocked_ns += stats.blocked_ns;
    s.runq_ns += stats.runq_ns;
    s.on_cpu_ns += stats
        .latency_sum_ns
        .saturating_sub(stats.blocked_ns + stats.runq_ns);
}

/// A user stack checked: the addresses kept (innermost first), and why it stops.
struct Walk {
    /// Innermost first: the instruction after the syscall, then return addresses (the
    /// callers the kernel unwound or kept, then its frame-pointer walk where that is right).
    ips: Vec<u64>,
    /// The walk left the code (a return address not after a call, or outside every mapping):
    /// the frames from there on were dropped.
    cut: bool,
    /// The address where the walk was cut: kept as the last frame if it names a thread's
    /// first function (Go's `goexit` is entered through a made-up return address that
    /// follows no call).
    cut_at: Option<u64>,
    /// Frames the kernel's frame-pointer walk lacks were put in: the syscall wrapper's caller,
    /// and with the rules learnt, the callers of code without frame pointers.
    recovered: bool,
}

/// Where an address is in a process, as far as naming it goes.
#[derive(Clone)]
enum Place {
    File(Arc<MappedFile>, u64),
    Anon,
    Named(String),
    Unmapped,
}

/// An address named: its function and the functions inlined into it at that address
/// (outermost first).
#[derive(Clone, Default)]
struct Named {
    names: Vec<String>,
}

/// Names the addresses of many stacks, one blazesym call per file.
struct Namer<'a> {
    images: &'a Images,
    /// By (file, symbolized offset).
    wanted: HashMap<*const MappedFile, (Arc<MappedFile>, BTreeSet<u64>)>,
    named: HashMap<(*const MappedFile, u64), Named>,
    kernel: HashMap<u64, String>,
    kernel_wanted: BTreeSet<u64>,
    /// Files with addresses that have no symbol.
    unnamed: BTreeSet<String>,
    symbolizer: Symbolizer,
}

impl<'a> Namer<'a> {
    fn new(images: &'a Images) -> Namer<'a> {
        Namer {
            images,
            wanted: HashMap::new(),
            named: HashMap::new(),
            kernel: HashMap::new(),
            kernel_wanted: BTreeSet::new(),
            unnamed: BTreeSet::new(),
            symbolizer: Symbolizer::new(),
        }
    }

    fn place(&self, pid: u32, addr: u64) -> Place {
        self.images.place(pid, addr)
    }

    /// Whether a return address follows a call instruction in its file (JIT code and the vDSO
    /// cannot be read back here: taken as they are).
    fn follows_call(&self, pid: u32, ra: u64) -> bool {
        match self.place(pid, ra) {
            Place::File(f, offset) => f.bytes_before(offset).is_some_and(|b| ends_with_call(&b)),
            Place::Anon | Place::Named(_) => true,
            Place::Unmapped => false,
        }
    }

    fn rule(&self, pid: u32, ip: u64, leaf: bool) -> ReturnAddress {
        self.images
            .rules
            .get(&(pid, ip, leaf))
            .copied()
            .unwrap_or(ReturnAddress::Unknown)
    }

    /// A stack's addresses, innermost first: the syscall instruction; the callers the kernel
    /// unwound with the rules learnt (before it had them: the candidate the wrapper's rule
    /// points at); then, from the first function that keeps a frame pointer, the kernel's
    /// frame-pointer walk (in code without frame pointers it is garbage). Each return address
    /// must follow a call instruction: the stack is cut at the first that does not. Notes the
    /// frames to name.
    fn walk(&mut self, key: &StackKey, ips: &[u64]) -> Walk {
        let pid = key.tgid;
        let Some(&leaf) = ips.first() else {
            return Walk {
                ips: Vec::new(),
                cut: true,
                cut_at: None,
                recovered: false,
            };
        };
        let mut kept = vec![leaf];
        let mut recovered = false;
        let leaf_rule = self.rule(pid, leaf, true);
        // Whether the frame-pointer walk is right from its second address on.
        let mut then_walk = leaf_rule == ReturnAddress::FramePointer;
        if key.unwound != 0 {
            for &ra in key.callers.iter().take_while(|&&ra| ra != 0) {
                if !self.follows_call(pid, ra) {
                    break;
                }
                kept.push(ra);
                recovered = true;
                match self.rule(pid, ra, false) {
                    ReturnAddress::AboveSp(_) => {}
                    ReturnAddress::FramePointer => {
                        then_walk = true;
                        break;
                    }
                    ReturnAddress::Unknown => break,
                }
            }
        } else {
            let caller = match leaf_rule {
                ReturnAddress::AboveSp(n) if n % 8 == 0 => {
                    key.callers.get(n as usize / 8).copied().unwrap_or(0)
                }
                ReturnAddress::AboveSp(_) | ReturnAddress::FramePointer => 0,
                ReturnAddress::Unknown => key.callers[0],
            };
            // Already in the walk: the wrapper kept a frame after all.
            if caller != 0 && self.follows_call(pid, caller) && ips.get(1) != Some(&caller) {
                kept.push(caller);
                recovered = true;
            }
            then_walk = true;
        }
        let mut cut = !then_walk;
        let mut cut_at = None;
        if then_walk {
            for &ra in &ips[1..] {
                if !self.follows_call(pid, ra) {
                    cut = true;
                    cut_at = Some(ra);
                    let place = self.place(pid, ra);
                    self.want(&place, true);
                    break;
                }
                kept.push(ra);
            }
        }
        for (i, &ip) in kept.iter().enumerate() {
            let place = self.place(pid, ip);
            self.want(&place, i > 0);
        }
        Walk {
            ips: kept,
            cut,
            cut_at,
            recovered,
        }
    }

    /// Return addresses are named by the byte before them: a call that ends its function
    /// returns past it.
    fn want(&mut self, place: &Place, is_return: bool) {
        if let Place::File(f, offset) = place {
            let offset = offset.saturating_sub(u64::from(is_return));
            self.wanted
                .entry(Arc::as_ptr(f))
                .or_insert_with(|| (f.clone(), BTreeSet::new()))
                .1
                .insert(offset);
        }
    }

    fn symbolize(&mut self) {
        for (key, (file, offsets)) in std::mem::take(&mut self.wanted) {
            let offsets: Vec<u64> = offsets.into_iter().collect();
            let source = Source::Elf(Elf::new(&file.source));
            let results = self
                .symbolizer
                .symbolize(&source, Input::FileOffset(&offsets))
                .unwrap_or_default();
            for (i, &offset) in offsets.iter().enumerate() {
                let named = match results.get(i) {
                    Some(Symbolized::Sym(sym)) => {
                        let mut names = vec![sym.name.to_string()];
                        names.extend(sym.inlined.iter().map(|f| f.name.to_string()));
                        Named { names }
                    }
                    _ => {
                        self.unnamed.insert(file.name().to_string());
                        Named::default()
                    }
                };
                self.named.insert((key, offset), named);
            }
        }
        if !self.kernel_wanted.is_empty() {
            let addrs: Vec<u64> = std::mem::take(&mut self.kernel_wanted)
                .into_iter()
                .collect();
            let source = Source::Kernel(Kernel::default());
            let results = self
                .symbolizer
                .symbolize(&source, Input::AbsAddr(&addrs))
                .unwrap_or_default();
            for (i, &addr) in addrs.iter().enumerate() {
                let name = match results.get(i) {
                    Some(Symbolized::Sym(sym)) => sym.name.to_string(),
                    _ => format!("[kernel 0x{addr:x}]"),
                };
                self.kernel.insert(addr, name);
            }
        }
    }

    /// The names of an address (outermost first).
    fn names(&self, pid: u32, ip: u64, is_return: bool) -> Vec<String> {
        match self.place(pid, ip) {
            Place::File(f, offset) => {
                let offset = offset.saturating_sub(u64::from(is_return));
                match self.named.get(&(Arc::as_ptr(&f), offset)) {
                    Some(n) if !n.names.is_empty() => n.names.clone(),
                    _ => vec![format!("{}+0x{offset:x}", f.name())],
                }
            }
            Place::Anon => vec!["[anon]".into()],
            Place::Named(n) => vec![n],
            Place::Unmapped => vec!["[unknown]".into()],
        }
    }

    /// A stack's frames, outermost first.
    fn frames(&self, pid: u32, w: &Walk) -> Vec<String> {
        let ips: Vec<(u64, bool)> = w
            .ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| (ip, i > 0))
            .collect();
        let mut frames = Vec::new();
        if !self.complete(pid, w) {
            frames.push(INCOMPLETE.to_string());
        }
        for &(ip, is_return) in ips.iter().rev() {
            let mut names = self.names(pid, ip, is_return);
            // DWARF may list a function as inlined into itself: one frame.
            names.dedup();
            frames.extend(names);
        }
        frames
    }

    /// Whether the walk reached a thread's first function.
    fn complete(&self, pid: u32, w: &Walk) -> bool {
        w.ips.len() > 1 && w.ips.last().is_some_and(|&ip| self.is_root(pid, ip))
    }

    /// Whether a return address is in a thread's first function.
    fn is_root(&self, pid: u32, ip: u64) -> bool {
        self.names(pid, ip, true)
            .first()
            .is_some_and(|n| THREAD_ROOTS.contains(&n.as_str()))
    }

    /// One line per binary whose stacks are cut short, or which has no symbols.
    fn notes(&self, stacks: &[CallStack]) -> Vec<String> {
        let mut notes = Vec::new();
        let calls: u64 = stacks.iter().map(|s| s.calls).sum();
        let cut: u64 = stacks
            .iter()
            .filter(|s| s.frames.first().is_some_and(|f| f == INCOMPLETE))
            .map(|s| s.calls)
            .sum();
        if cut > 0 {
            notes.push(format!(
                "{:.0} % of the calls have stacks cut short ([incomplete]): where code keeps no \
                 frame pointer (built without -fno-omit-frame-pointer: most distribution \
                 binaries), the kernel unwinds by the frame rules netpoll learns from .eh_frame \
                 as the stacks show up (a code path's first calls stop short), at most 8 callers \
                 deep; the frames shown are right",
                100.0 * cut as f64 / calls.max(1) as f64
            ));
        }
        for file in &self.unnamed {
            notes.push(format!(
                "{file}: addresses without a symbol (stripped binary?) are shown as {file}+0xOFFSET"
            ));
        }
        let deleted: BTreeSet<&str> = self
            .images
            .files
            .values()
            .filter(|f| f.path.ends_with(" (deleted)"))
            .map(|f| f.path.as_str())
            .collect();
        for path in deleted {
            notes.push(format!(
                "{path}: named from the mapping kept open (the file was deleted while it ran)"
            ));
        }
        notes
    }
}

/// The kernel frames of a call, outermost first: where it first left the CPU, from the
/// syscall's entry to the scheduler (the tracing frames above `__schedule` left out).
fn kernel_frames(id: i32, ips: Option<Vec<u64>>, namer: &Namer) -> Vec<String> {
    match (id, ips) {
        (STAYED_ON_CPU, _) => vec!["[stayed on CPU]".into()],
        (NOT_TAKEN, _) => Vec::new(),
        (_, None) => vec!["[kernel stack lost]".into()],
        (_, Some(ips)) => {
            let names: Vec<String> = ips
                .iter()
                .map(|ip| {
                    namer
                        .kernel
                        .get(ip)
                        .cloned()
                        .unwrap_or_else(|| format!("[kernel 0x{ip:x}]"))
                })
                .collect();
            let from = names.iter().position(|n| n == "__schedule").unwrap_or(0);
            names[from..].iter().rev().cloned().collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_are_parsed_with_paths_that_have_spaces() {
        let text = "\
55d0c8a00000-55d0c8a2b000 r--p 00000000 08:01 1234 /usr/bin/redis-check-rdb
55d0c8a2b000-55d0c8c00000 r-xp 0002b000 08:01 1234 /usr/bin/redis-check-rdb
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 
7f0000002000-7f0000003000 r-xp 00001000 08:01 99 /tmp/a b (deleted)
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]
";
        let lines = parse_maps(text);
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[1],
            MapsLine {
                start: 0x55d0c8a2b000,
                end: 0x55d0c8c00000,
                executable: true,
                offset: 0x2b000,
                path: "/usr/bin/redis-check-rdb",
            }
        );
        assert!(!lines[0].executable);
        assert_eq!(lines[2].path, "");
        assert_eq!(lines[3].path, "/tmp/a b (deleted)");
        assert_eq!(lines[4].path, "[vdso]");
    }

    fn mapping(start: u64, end: u64, name: &str) -> Mapping {
        Mapping {
            start,
            end,
            offset: 0,
            backing: Backing::Named(name.into()),
        }
    }

    fn name_at(image: &Image, addr: u64) -> Option<String> {
        image.find(addr).map(|m| match &m.backing {
            Backing::Named(n) => n.clone(),
            _ => unreachable!(),
        })
    }

    #[test]
    fn mappings_read_later_replace_what_they_overlap() {
        let mut image = Image::default();
        image.merge(vec![
            mapping(0x1000, 0x2000, "a"),
            mapping(0x3000, 0x4000, "b"),
        ]);
        assert_eq!(name_at(&image, 0x1800).as_deref(), Some("a"));
        assert_eq!(name_at(&image, 0x2800), None);
        assert_eq!(name_at(&image, 0x4000), None);
        // An exec: a new file over the old one's range; the other stays (the old process's
        // stacks named before are kept).
        image.merge(vec![mapping(0x1800, 0x2800, "c")]);
        assert_eq!(name_at(&image, 0x1000), None);
        assert_eq!(name_at(&image, 0x2000).as_deref(), Some("c"));
        assert_eq!(name_at(&image, 0x3800).as_deref(), Some("b"));
    }

    #[test]
    fn slots_name_their_class_and_syscall() {
        let read = SYSCALLS.iter().position(|s| s.name == "read").unwrap();
        let epoll = SYSCALLS
            .iter()
            .position(|s| s.name == "epoll_wait")
            .unwrap();
        let slot = |index, socket| netpoll_ebpf::abi::slot(index, socket, false) as u32;
        assert_eq!(
            class_of(slot(read, true)),
            ("socket_read".into(), "read".into())
        );
        assert_eq!(
            class_of(slot(read, false)),
            ("other_read".into(), "read".into())
        );
        assert_eq!(
            class_of(slot(epoll, false)),
            ("epoll".into(), "epoll_wait".into())
        );
    }
}
