//! x86_64 instruction facts the stack walks rely on (the kernel side and user space check
//! return addresses the same way).

/// Whether these 8 bytes end with an x86_64 call instruction, so that the address after them
/// can be a return address: `call rel32` (E8), or `call r/m64` (FF /2) in each of its encodings
/// (register; [reg]; [reg+disp8]; [rip+disp32]; [reg+disp32]; with a SIB byte where the form
/// has one). A REX prefix comes before and is not looked at.
#[inline(always)]
pub fn ends_with_call(b: &[u8; 8]) -> bool {
    call_ends(u64::from_le_bytes(*b)) != 0
}

/// [`ends_with_call`] of 8 bytes read as a little-endian word (the last byte is the top one),
/// 1 or 0, computed without a branch: the BPF verifier walks each branch of each word checked
/// on its own, so branches here multiply its work.
#[inline(always)]
pub fn call_ends(x: u64) -> u64 {
    // 1 when the bytes of `x` under `mask` are `value`.
    let is = |mask: u64, value: u64| zero((x & mask) ^ value);
    // FF at byte `i - 1`, then a ModRM byte at `i` with mod and reg fields `mod_reg` (reg 2:
    // call) and rm field `rm`.
    let ff_rm = |i: u32, mod_reg: u64, rm: u64| {
        is(
            (0xff << (8 * (i - 1))) | (0xff << (8 * i)),
            (0xff << (8 * (i - 1))) | ((mod_reg | rm) << (8 * i)),
        )
    };
    // The same with any rm but 4 (a SIB byte follows) and, for mod 0, 5 (rip-relative): the
    // longer forms.
    let ff_any = |i: u32, mod_reg: u64| {
        let any = is(
            (0xff << (8 * (i - 1))) | (0xf8 << (8 * i)),
            (0xff << (8 * (i - 1))) | (mod_reg << (8 * i)),
        );
        let rip = if mod_reg == 0x10 {
            ff_rm(i, mod_reg, 5)
        } else {
            0
        };
        any & !ff_rm(i, mod_reg, 4) & !rip & 1
    };
    is(0xff << 24, 0xe8 << 24) // call rel32
        | ff_any(7, 0xd0) // call reg
        | ff_any(7, 0x10) // call [reg]
        | ff_rm(6, 0x10, 4) // call [sib]
        | ff_any(6, 0x50) // call [reg+disp8]
        | ff_rm(5, 0x50, 4) // call [sib+disp8]
        | ff_rm(3, 0x10, 5) // call [rip+disp32]
        | ff_any(3, 0x90) // call [reg+disp32]
        | ff_rm(2, 0x90, 4) // call [sib+disp32]
}

/// 1 when `d` is 0, else 0, without a branch.
#[inline(always)]
pub fn zero(d: u64) -> u64 {
    ((d | d.wrapping_neg()) >> 63) ^ 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` placed at the end of 8 bytes of filler (`0x90`, nop).
    fn ending(bytes: &[u8]) -> [u8; 8] {
        let mut b = [0x90; 8];
        b[8 - bytes.len()..].copy_from_slice(bytes);
        b
    }

    #[test]
    fn call_encodings_are_recognised() {
        // As objdump prints them (gcc, clang, Go).
        for call in [
            &[0xe8, 0x10, 0x20, 0x30, 0x40][..],         // call rel32
            &[0xff, 0xd0],                               // call *%rax
            &[0x41, 0xff, 0xd3],                         // call *%r11
            &[0xff, 0x10],                               // call *(%rax)
            &[0xff, 0x14, 0x24],                         // call *(%rsp)
            &[0xff, 0x50, 0x08],                         // call *0x8(%rax)
            &[0xff, 0x54, 0x24, 0x08],                   // call *0x8(%rsp)
            &[0xff, 0x15, 0x01, 0x02, 0x03, 0x04],       // call *0x4030201(%rip)
            &[0xff, 0x90, 0x00, 0x01, 0x00, 0x00],       // call *0x100(%rax)
            &[0xff, 0x94, 0x24, 0x00, 0x01, 0x00, 0x00], // call *0x100(%rsp)
        ] {
            assert!(ends_with_call(&ending(call)), "{call:x?}");
        }
    }

    #[test]
    fn zero_is_one_for_zero_only() {
        assert_eq!(zero(0), 1);
        for d in [1, 2, 0xff, 1 << 63, u64::MAX] {
            assert_eq!(zero(d), 0, "{d:x}");
        }
    }

    #[test]
    fn other_code_is_not_a_call() {
        for other in [
            &[0x90, 0x90][..],         // nops
            &[0x0f, 0x05],             // syscall
            &[0xff, 0xe0],             // jmp *%rax
            &[0xff, 0x25, 0, 0, 0, 0], // jmp *(%rip)
            &[0xe9, 0, 0, 0, 0],       // jmp rel32
            &[0x48, 0x89, 0xe5],       // mov %rsp,%rbp
            &[0xff, 0x14],             // call [sib] cut short: not 2 bytes long
            &[0xff, 0x15, 0, 0],       // likewise [rip+disp32]
        ] {
            assert!(!ends_with_call(&ending(other)), "{other:x?}");
        }
    }
}
