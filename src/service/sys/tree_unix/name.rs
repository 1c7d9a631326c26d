//! A file name as the walk holds it: copied out of the `getdents` buffer into a fixed array,
//! NUL-terminated, so that the walk, its forked child and the child's report allocate nothing.
//! Touches nothing: plain data.

use std::ffi::CStr;

/// A file name (at most 255 bytes on Linux) and its NUL.
pub(super) const NAME_CAP: usize = 256;

/// A name copied out of the `getdents` buffer, NUL-terminated.
#[derive(Clone, Copy)]
pub(super) struct Name {
    pub(super) bytes: [u8; NAME_CAP],
    pub(super) len: usize,
}

impl Name {
    pub(super) const EMPTY: Name = Name {
        bytes: [0; NAME_CAP],
        len: 0,
    };

    pub(super) fn set(&mut self, s: &CStr) -> bool {
        let b = s.to_bytes_with_nul();
        if b.len() > NAME_CAP {
            return false;
        }
        self.bytes[..b.len()].copy_from_slice(b);
        self.len = b.len() - 1;
        true
    }

    pub(super) fn c(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }

    /// For a message: the name is the tree owner's choice, so it is quoted with escapes.
    pub(super) fn shown(&self) -> String {
        format!("{:?}", String::from_utf8_lossy(&self.bytes[..self.len]))
    }
}
