//! A Go executable read from its file, never run: the Go version (`.go.buildinfo`), the
//! runtime's globals (the ELF symbol table, which `-ldflags=-s` removes), its functions
//! (`.gopclntab`, the runtime's own table, which no build flag removes) and struct field
//! offsets (DWARF, which `-ldflags=-w` removes).

use std::{borrow::Cow, collections::HashMap};

use analysis::go::GoBinaryInfo;

use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};

/// Why a file cannot be inspected as a Go binary; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("{path} is not an ELF executable netpoll can read: {error}")]
    NotElf { path: String, error: object::Error },
    #[error("{path} is not a Go binary (it has no .go.buildinfo section)")]
    NotGo { path: String },
    #[error("{path} was built by {version}; netpoll reads {MIN_GO} and later")]
    Unsupported { path: String, version: String },
}

/// The oldest Go whose runtime layout netpoll knows (Debian 12's golang-go).
pub const MIN_GO: &str = "go1.19";

/// A Go release, as `.go.buildinfo` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// `go1.21.13`, `go1.22` (a `.0` release), `go1.27.3 X:nocoverageredesign`; `None` for
    /// development builds (`devel ...`).
    pub fn parse(s: &str) -> Option<GoVersion> {
        let v = s.strip_prefix("go")?.split([' ', '-']).next()?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(GoVersion {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A global of the binary, from the symbol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Global {
    pub address: u64,
    pub size: u64,
}

/// A function of the binary: where it starts and ends, and where its first instruction is in
/// the file (what a uprobe is attached to).
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub address: u64,
    pub end: u64,
    pub file_offset: u64,
}

/// A Go executable, inspected.
pub struct GoBinary {
    pub path: String,
    pub version: GoVersion,
    /// The version string as the binary has it (`go1.19.8`).
    pub version_text: String,
    /// Position-independent: its globals and functions move by a load bias when it runs.
    pub pie: bool,
    /// The lowest address it is linked at (its first loadable segment): a running PIE's first
    /// mapping minus this is its load bias.
    pub lowest_address: u64,
    globals: HashMap<String, Global>,
    /// Every function, by entry address (from `.gopclntab`).
    functions: Vec<Function>,
    /// The DWARF struct types, when the binary kept DWARF.
    dwarf: Option<Dwarf>,
}

impl GoBinary {
    /// Inspects an executable's bytes; `path` names it in errors.
    pub fn parse(data: &[u8], path: &str) -> Result<GoBinary, GoError> {
        let file = object::File::parse(data).map_err(|error| GoError::NotElf {
            path: path.into(),
            error,
        })?;
        let buildinfo = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .ok_or_else(|| GoError::NotGo { path: path.into() })?;
        let version_text = buildinfo_version(buildinfo, &file)
            .ok_or_else(|| GoError::NotGo { path: path.into() })?;
        let version = GoVersion::parse(&version_text)
            .filter(|v| (v.major, v.minor) >= (1, 19))
            .ok_or_else(|| GoError::Unsupported {
                path: path.into(),
                version: version_text.clone(),
            })?;
        let globals = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Data && s.address() != 0)
            .filter_map(|s| {
                Some((
                    s.name().ok()?.to_string(),
                    Global {
                        address: s.address(),
                        size: s.size(),
                    },
                ))
            })
            .collect();
        let functions = functions(&file, &globals).unwrap_or_default();
        Ok(GoBinary {
            path: path.into(),
            version,
            version_text,
            pie: file.kind() == object::ObjectKind::Dynamic,
            lowest_address: file.segments().map(|s| s.address()).min().unwrap_or(0),
            globals,
            functions,
            dwarf: Dwarf::load(&file),
        })
    }

    /// A runtime global by its symbol name (`runtime.sched`); `None` when the symbol table was
    /// stripped (`-ldflags=-s`) or the runtime has no such variable.
    pub fn global(&self, name: &str) -> Option<Global> {
        self.globals.get(name).copied()
    }

    /// What the results say about it.
    pub fn info(&self) -> GoBinaryInfo {
        GoBinaryInfo {
            path: self.path.clone(),
            version: self.version_text.clone(),
            pie: self.pie,
            symbols: self.has_symbols(),
            dwarf: self.has_dwarf(),
        }
    }

    /// A function by its name (`runtime.execute`); `None` when `.gopclntab` could not be read
    /// or the runtime has no such function.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The function an address (as linked) is in.
    pub fn function_at(&self, address: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.address <= address);
        self.functions
            .get(i.checked_sub(1)?)
            .filter(|f| address < f.end)
    }

    /// Whether the symbol table survived: without it, no runtime global can be found.
    pub fn has_symbols(&self) -> bool {
        !self.globals.is_empty()
    }

    pub fn has_dwarf(&self) -> bool {
        self.dwarf.is_some()
    }

    /// The offset of a member (`path`, through nested structs) of a struct type, from DWARF.
    pub fn dwarf_offset(&self, structure: &str, path: &[&str]) -> Option<u64> {
        self.dwarf.as_ref()?.offset(structure, path)
    }
}

/// The version string of `.go.buildinfo`: inline (Go 1.18+: a varint length and the bytes at
/// offset 32) or, before, a pointer to a Go string header.
fn buildinfo_version(section: &[u8], file: &object::File) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !section.starts_with(MAGIC) {
        return None;
    }
    let (ptr_size, flags) = (*section.get(14)? as usize, *section.get(15)?);
    if flags & 2 != 0 {
        let (len, used) = uvarint(section.get(32..)?)?;
        let start = 32 + used;
        let bytes = section.get(start..start + len as usize)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    // Pointers to the version's string header, then to modinfo's.
    let word = |b: &[u8]| -> Option<u64> {
        Some(match ptr_size {
            8 => u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            4 => u64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    };
    let header = read_virtual(file, word(section.get(16..)?)?, 2 * ptr_size)?;
    let (ptr, len) = (word(&header)?, word(header.get(ptr_size..)?)?);
    String::from_utf8(read_virtual(file, ptr, len as usize)?.into_owned()).ok()
}

/// The functions of `.gopclntab` (Go 1.18+ layout: a `pcHeader`, then a table of
/// `{entryoff, funcoff}` pairs, each `_func` naming its function by an offset into the name
/// table; runtime/symtab.go), sorted by address. Found as a section, or, where the linker put
/// it inside `.data.rel.ro` (a PIE), between the `runtime.pclntab` and `runtime.epclntab`
/// symbols.
fn functions(file: &object::File, globals: &HashMap<String, Global>) -> Option<Vec<Function>> {
    let table: Cow<[u8]> = match file.section_by_name(".gopclntab") {
        Some(s) => s.uncompressed_data().ok()?,
        None => {
            let start = globals.get("runtime.pclntab")?.address;
            let end = globals.get("runtime.epclntab")?.address;
            read_virtual(file, start, end.checked_sub(start)? as usize)?
        }
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(table.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(table.get(at..at + 8)?.try_into().ok()?))
    };
    // go1.18 and go1.20 magics; the layout is the same.
    if !matches!(u32_at(0)?, 0xffff_fff0 | 0xffff_fff1) || *table.get(7)? != 8 {
        return None;
    }
    let nfunc = u64_at(8)? as usize;
    // textStart is relocated at load in a PIE (0 in the file): then the runtime.text symbol,
    // else the start of .text, where Go's linker puts runtime.text.
    let text = match u64_at(24)? {
        0 => file
            .symbols()
            .find(|s| s.name() == Ok("runtime.text"))
            .map(|s| s.address())
            .or_else(|| file.section_by_name(".text").map(|s| s.address()))?,
        t => t,
    };
    let (names, pcln) = (u64_at(32)? as usize, u64_at(64)? as usize);
    let mut found = Vec::with_capacity(nfunc);
    for i in 0..nfunc {
        let entry = pcln + i * 8;
        let (entry_off, func_off) = (u32_at(entry)?, u32_at(entry + 4)?);
        let end = u32_at(entry + 8)?;
        let name_off = u32_at(pcln + func_off as usize + 4)? as usize;
        let name = table.get(names + name_off..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        let address = text + u64::from(entry_off);
        found.push(Function {
            name: String::from_utf8_lossy(name).into_owned(),
            address,
            end: text + u64::from(end),
            file_offset: file_offset(file, address)?,
        });
    }
    found.sort_by_key(|f| f.address);
    Some(found)
}

/// Where a virtual address of a loadable segment is in the file.
fn file_offset(file: &object::File, address: u64) -> Option<u64> {
    file.segments().find_map(|s| {
        let delta = address.checked_sub(s.address())?;
        let (offset, size) = s.file_range();
        (delta < size).then_some(offset + delta)
    })
}

/// `len` bytes at a virtual address of the file's sections.
fn read_virtual<'a>(file: &'a object::File, address: u64, len: usize) -> Option<Cow<'a, [u8]>> {
    file.sections().find_map(|s| {
        let start = address.checked_sub(s.address())? as usize;
        let data = s.data().ok()?;
        data.get(start..start + len).map(Cow::Borrowed)
    })
}

/// An unsigned LEB128 varint (Go's encoding/binary.Uvarint): (value, bytes used).
fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A struct type of the DWARF: its name and members.
struct StructType {
    name: String,
    members: Vec<Member>,
}

/// A member: its name, byte offset, and the .debug_info offset of its type's DIE.
struct Member {
    name: String,
    offset: u64,
    ty: Option<u64>,
}

/// Struct types of the binary's DWARF: each struct's members with their offsets and types.
struct Dwarf {
    /// By DIE offset in .debug_info.
    structs: HashMap<u64, StructType>,
    /// Typedefs: DIE offset → the type it names.
    typedefs: HashMap<u64, u64>,
    /// By name, the DIE offset of the struct.
    by_name: HashMap<String, u64>,
}

impl Dwarf {
    /// The struct types, or `None` when the binary has no DWARF (`-ldflags=-w`) or it cannot be
    /// read.
    fn load(file: &object::File) -> Option<Dwarf> {
        file.section_by_name(".debug_info")?;
        let load = |id: gimli::SectionId| -> Result<Cow<[u8]>, gimli::Error> {
            Ok(file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[])))
        };
        let sections = gimli::DwarfSections::load(load).ok()?;
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
        let mut structs = HashMap::new();
        let mut typedefs = HashMap::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            collect_structs(&dwarf, &unit, &mut structs, &mut typedefs).ok()?;
        }
        let by_name = structs
            .iter()
            .map(|(offset, s)| (s.name.clone(), *offset))
            .collect();
        Some(Dwarf {
            structs,
            typedefs,
            by_name,
        })
    }

    fn offset(&self, structure: &str, path: &[&str]) -> Option<u64> {
        let mut at = *self.by_name.get(structure)?;
        let mut total = 0;
        for (i, member) in path.iter().enumerate() {
            let found = self
                .structs
                .get(&at)?
                .members
                .iter()
                .find(|m| m.name == *member)?;
            total += found.offset;
            if i + 1 < path.len() {
                at = found.ty?;
                // A named type may be a typedef of the struct (followed a few levels at most).
                for _ in 0..4 {
                    match self.typedefs.get(&at) {
                        Some(&target) => at = target,
                        None => break,
                    }
                }
            }
        }
        Some(total)
    }
}

type Reader<'a> = gimli::EndianSlice<'a, gimli::LittleEndian>;

/// Adds the unit's struct types (with their members) to `structs`, keyed by .debug_info offset.
fn collect_structs(
    dwarf: &gimli::Dwarf<Reader>,
    unit: &gimli::Unit<Reader>,
    structs: &mut HashMap<u64, StructType>,
    typedefs: &mut HashMap<u64, u64>,
) -> gimli::Result<()> {
    // Offsets within .debug_info, the coordinates references between units use.
    let section_offset =
        |o: gimli::UnitOffset| -> u64 { o.to_unit_section_offset(&unit.header).0 as u64 };
    let type_of = |entry: &gimli::DebuggingInformationEntry<Reader>| -> Option<u64> {
        match entry.attr_value(gimli::DW_AT_type)? {
            gimli::AttributeValue::UnitRef(o) => Some(section_offset(o)),
            gimli::AttributeValue::DebugInfoRef(d) => Some(d.0 as u64),
            _ => None,
        }
    };
    let name_of = |entry: &gimli::DebuggingInformationEntry<Reader>| -> Option<String> {
        let value = entry.attr_value(gimli::DW_AT_name)?;
        Some(
            dwarf
                .attr_string(unit, value)
                .ok()?
                .to_string_lossy()
                .into_owned(),
        )
    };
    let mut entries = unit.entries();
    // The struct whose members are being read, and the depth of its members.
    let mut current: Option<(u64, isize)> = None;
    while let Some(entry) = entries.next_dfs()? {
        let depth = entry.depth();
        if let Some((_, member_depth)) = current
            && depth < member_depth
        {
            current = None;
        }
        match entry.tag() {
            gimli::DW_TAG_structure_type => {
                let offset = section_offset(entry.offset());
                let name = name_of(entry).unwrap_or_default();
                structs.insert(
                    offset,
                    StructType {
                        name,
                        members: Vec::new(),
                    },
                );
                current = entry.has_children().then_some((offset, depth + 1));
            }
            gimli::DW_TAG_typedef => {
                if let Some(target) = type_of(entry) {
                    typedefs.insert(section_offset(entry.offset()), target);
                }
            }
            gimli::DW_TAG_member => {
                let Some((owner, member_depth)) = current else {
                    continue;
                };
                if depth != member_depth {
                    continue;
                }
                let location = match entry.attr_value(gimli::DW_AT_data_member_location) {
                    Some(gimli::AttributeValue::Udata(v)) => v,
                    Some(gimli::AttributeValue::Data1(v)) => u64::from(v),
                    Some(gimli::AttributeValue::Data2(v)) => u64::from(v),
                    Some(gimli::AttributeValue::Data4(v)) => u64::from(v),
                    Some(gimli::AttributeValue::Data8(v)) => v,
                    Some(gimli::AttributeValue::Sdata(v)) => v as u64,
                    _ => continue,
                };
                let member = Member {
                    name: name_of(entry).unwrap_or_default(),
                    offset: location,
                    ty: type_of(entry),
                };
                if let Some(s) = structs.get_mut(&owner) {
                    s.members.push(member);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_buildinfo_writes_them() {
        let v = |s| GoVersion::parse(s);
        assert_eq!(
            v("go1.19.8"),
            Some(GoVersion {
                major: 1,
                minor: 19,
                patch: 8
            })
        );
        assert_eq!(v("go1.22").map(|v| v.patch), Some(0));
        assert_eq!(
            v("go1.27.3 X:nocoverageredesign").map(|v| v.minor),
            Some(27)
        );
        assert_eq!(v("devel go1.23-abcdef"), None);
        assert!(v("go1.21.13") > v("go1.19.8"));
    }

    #[test]
    fn varints_are_leb128() {
        assert_eq!(uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }

    #[test]
    fn a_file_that_is_not_go_is_refused_in_one_line() {
        let own = std::fs::read(std::env::current_exe().expect("own binary")).expect("read");
        let err = GoBinary::parse(&own, "netpoll")
            .err()
            .expect("a Rust binary is not Go");
        assert!(err.to_string().contains("is not a Go binary"), "{err}");
        let err = GoBinary::parse(b"#!/bin/sh\n", "script")
            .err()
            .expect("not ELF");
        assert!(err.to_string().starts_with("script is not an ELF"), "{err}");
    }
}
