//! The report a walking child sends back through its pipe: how the walk ended, how many
//! entries it spent, and the name of the first entry left, in a fixed-size buffer written
//! without allocating. Touches nothing: bytes in, bytes out.

use super::fail::{Fail, Op};
use super::name::{Name, NAME_CAP};
use crate::service::sys::tree::Removal;

/// status(1) op(1) errno(4) depth(4) entries(8) name_len(2) name(255).
pub(super) const REPORT: usize = 1 + 1 + 4 + 4 + 8 + 2 + (NAME_CAP - 1);

pub(super) fn encode(result: &Result<Removal, Fail>, entries: u64, failed: &Name) -> [u8; REPORT] {
    let mut b = [0u8; REPORT];
    let (status, f) = match result {
        Ok(Removal::Gone) => (1u8, None),
        Ok(Removal::More) => (2, None),
        Err(f) => (3, Some(f)),
    };
    b[0] = status;
    if let Some(f) = f {
        b[1] = f.op as u8;
        b[2..6].copy_from_slice(&f.errno.to_le_bytes());
        b[6..10].copy_from_slice(&f.depth.to_le_bytes());
        let n = failed.len.min(NAME_CAP - 1);
        b[18..20].copy_from_slice(&(n as u16).to_le_bytes());
        b[20..20 + n].copy_from_slice(&failed.bytes[..n]);
    }
    b[10..18].copy_from_slice(&entries.to_le_bytes());
    b
}

pub(super) fn decode(b: &[u8]) -> Option<(Result<Removal, Fail>, u64, Name)> {
    if b.len() != REPORT {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut e = [0u8; 8];
    e.copy_from_slice(&b[10..18]);
    let entries = u64::from_le_bytes(e);
    let mut name = Name::EMPTY;
    let n = (u16::from_le_bytes([b[18], b[19]]) as usize).min(NAME_CAP - 1);
    name.bytes[..n].copy_from_slice(&b[20..20 + n]);
    name.len = n;
    let result = match b[0] {
        1 => Ok(Removal::Gone),
        2 => Ok(Removal::More),
        3 => Err(Fail {
            op: Op::from_u8(b[1]),
            errno: u32_at(2) as i32,
            depth: u32_at(6),
        }),
        _ => return None,
    };
    Some((result, entries, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_survives_the_pipe() {
        let mut n = Name::EMPTY;
        n.set(c"we\x01ird");
        let f = Fail {
            op: Op::Mount,
            errno: libc::EXDEV,
            depth: 7,
        };
        let b = encode(&Err(f), 42, &n);
        let (r, entries, name) = decode(&b).unwrap();
        let back = r.unwrap_err();
        assert_eq!(
            (back.op, back.errno, back.depth, entries),
            (Op::Mount, libc::EXDEV, 7, 42)
        );
        assert_eq!(name.shown(), "\"we\\u{1}ird\"");
        let b = encode(&Ok(Removal::More), 3, &Name::EMPTY);
        assert!(matches!(decode(&b), Some((Ok(Removal::More), 3, _))));
        assert!(decode(&b[..10]).is_none());
    }
}
