//! Where a syscall wrapper keeps its return address, from its call frame information
//! (`.eh_frame`, the table every x86_64 ELF carries for exceptions and debuggers): at the
//! syscall, the canonical frame address (CFA) is the stack pointer plus N, and the return
//! address sits just below it, at sp + N - 8. That picks the right word among the candidates
//! the kernel kept, where guessing would take a stale return address or a local.

use std::path::Path;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, LittleEndian, UnwindContext, UnwindSection as _, X86_64,
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};

/// Where the return address is at an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnAddress {
    /// At the stack pointer plus this many bytes: the function keeps no frame pointer, so the
    /// frame-pointer walk skips its caller.
    AboveSp(u64),
    /// The function has set up its frame pointer: the walk finds its caller itself.
    FramePointer,
    /// No call frame information covers the instruction (Go binaries carry none): the word at
    /// the stack pointer is taken, as for a frameless wrapper (Go's `Syscall6` is one).
    Unknown,
}

/// An ELF file's call frame information and its layout (file offsets to addresses).
pub struct FrameInfo {
    data: Vec<u8>,
    /// `.eh_frame`: its bytes in `data`, and its address.
    eh_frame: Option<(std::ops::Range<usize>, u64)>,
    text_address: u64,
    /// Loadable segments: (file offset, address, size in the file).
    segments: Vec<(u64, u64, u64)>,
}

impl FrameInfo {
    pub fn load(path: &Path) -> Option<FrameInfo> {
        let data = std::fs::read(path).ok()?;
        let elf = object::File::parse(&*data).ok()?;
        let eh_frame = elf.section_by_name(".eh_frame").and_then(|s| {
            let (offset, size) = s.file_range()?;
            Some((offset as usize..(offset + size) as usize, s.address()))
        });
        let text_address = elf.section_by_name(".text").map_or(0, |s| s.address());
        let segments = elf
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        Some(FrameInfo {
            data,
            eh_frame,
            text_address,
            segments,
        })
    }

    /// Whether the file has call frame information at all (Go binaries have none: they keep
    /// frame pointers instead).
    pub fn has_cfi(&self) -> bool {
        self.eh_frame.is_some()
    }

    /// The address (as in the file) of a file offset.
    pub fn address_of(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(start, _, size)| (*start..start + size).contains(&offset))
            .map(|(start, address, _)| address + (offset - start))
    }

    /// Where the return address is at the instruction at `address`.
    pub fn return_address(&self, address: u64) -> ReturnAddress {
        let Some((range, eh_frame_address)) = &self.eh_frame else {
            return ReturnAddress::Unknown;
        };
        let Some(bytes) = self.data.get(range.clone()) else {
            return ReturnAddress::Unknown;
        };
        let eh_frame = EhFrame::new(bytes, LittleEndian);
        let bases = BaseAddresses::default()
            .set_eh_frame(*eh_frame_address)
            .set_text(self.text_address);
        let mut context = UnwindContext::new();
        let Ok(row) = eh_frame.unwind_info_for_address(
            &bases,
            &mut context,
            address,
            EhFrame::cie_from_offset,
        ) else {
            return ReturnAddress::Unknown;
        };
        match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset }
                if *register == X86_64::RSP && *offset >= 8 =>
            {
                ReturnAddress::AboveSp(*offset as u64 - 8)
            }
            CfaRule::RegisterAndOffset { register, .. } if *register == X86_64::RBP => {
                ReturnAddress::FramePointer
            }
            _ => ReturnAddress::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary's own call frame information, at the start of a function (the return
    /// address at the stack pointer).
    #[test]
    fn a_function_entry_has_its_return_address_at_the_stack_pointer() {
        let info = FrameInfo::load(Path::new("/proc/self/exe")).unwrap();
        let elf = object::File::parse(&*info.data).unwrap();
        use object::ObjectSymbol as _;
        let entry = elf
            .symbols()
            .find(|s| s.name().is_ok_and(|n| n == "main") && s.address() != 0)
            .expect("main in the symbol table")
            .address();
        assert_eq!(info.return_address(entry), ReturnAddress::AboveSp(0));
        // An address outside every function has no rule.
        assert_eq!(info.return_address(1), ReturnAddress::Unknown);
    }
}
