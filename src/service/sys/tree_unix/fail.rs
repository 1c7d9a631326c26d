//! Why a walk stopped: the operation it was doing, the error and how deep, kept for the first
//! entry that could not be removed (the walk goes on with the rest). Fixed size, so the child
//! can send it back in its report. Touches nothing: plain data.

use super::name::Name;
use rustix::io::Errno;
use std::ffi::CStr;

/// What the walk was doing when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Read = 1,
    Unlink,
    Open,
    Rmdir,
    Move,
    Mount,
    Identity,
}

impl Op {
    pub(super) fn from_u8(b: u8) -> Op {
        [
            Op::Read,
            Op::Unlink,
            Op::Open,
            Op::Rmdir,
            Op::Move,
            Op::Mount,
            Op::Identity,
        ]
        .into_iter()
        .find(|o| *o as u8 == b)
        .unwrap_or(Op::Read)
    }

    pub(super) fn verb(self) -> &'static str {
        match self {
            Op::Read => "reading",
            Op::Unlink => "unlinking",
            Op::Open => "opening",
            Op::Rmdir => "removing the folder",
            Op::Move => "moving up",
            Op::Mount => "entering",
            Op::Identity => "taking the owner's identity for",
        }
    }
}

/// Why a walk stopped (the entry's name is in `Walk::failed` (`walk.rs`)).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fail {
    pub(super) op: Op,
    pub(super) errno: i32,
    pub(super) depth: u32,
}

/// Keeps the first failure of a walk, with the entry's name.
pub(super) fn note(first: &mut Option<Fail>, failed: &mut Name, f: Fail, name: &CStr) {
    if first.is_none() {
        *first = Some(f);
        failed.set(name);
    }
}

pub(super) fn fail(op: Op, e: Errno, depth: usize) -> Fail {
    Fail {
        op,
        errno: e.raw_os_error(),
        depth: depth as u32,
    }
}
