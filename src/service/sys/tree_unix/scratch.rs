//! The walk's large part (its levels and its `getdents` buffer), allocated before any fork and
//! kept between walks as one spare. Touches only the process's heap (no file, no system call).

use super::name::Name;
use std::mem::MaybeUninit;
use std::sync::Mutex;

/// Levels held open below the tree's root; deeper folders are moved up to the root.
pub(super) const MAX_DEPTH: usize = 32;
/// The `getdents` buffer: room for dozens of the longest names.
const DIR_BUF: usize = 16 * 1024;

/// One open level below the root.
#[derive(Clone, Copy)]
pub(super) struct Level {
    /// This folder's name in its parent.
    pub(super) name: Name,
    /// Where the next pass over this folder goes on (a `getdents` cookie).
    pub(super) resume: u64,
    /// This pass removed something: another pass follows. A pass that removes nothing ends
    /// the folder: it is empty, or what is left cannot be removed (see `Walk::first`, `walk.rs`).
    pub(super) progress: bool,
    /// Its mode was set to 0700 already (owner mode), not again.
    pub(super) opened_up: bool,
}

impl Level {
    pub(super) const NEW: Level = Level {
        name: Name::EMPTY,
        resume: 0,
        progress: false,
        opened_up: false,
    };
}

/// The walk's large part (25 KiB): its levels and its `getdents` buffer.
pub(super) struct Scratch {
    pub(super) levels: [Level; MAX_DEPTH],
    pub(super) buf: [MaybeUninit<u8>; DIR_BUF],
}

/// One scratch kept between walks. The daemon removes a tree after most runs (a pruned run
/// folder), on the finisher's threads, which share one heap with the loop: a 25 KiB block
/// taken and given back at every run, between small blocks that live on, left the heap
/// fragmented and its top creeping up (the soak of issue 25). A walk takes the spare, or a new
/// scratch when another walk holds it, and gives it back to be the spare if there is none.
static SPARE: Mutex<Option<Box<Scratch>>> = Mutex::new(None);

impl Scratch {
    pub(super) fn take() -> Box<Scratch> {
        let spare = SPARE.lock().ok().and_then(|mut s| s.take());
        let mut s = spare.unwrap_or_else(|| {
            Box::new(Scratch {
                levels: [Level::NEW; MAX_DEPTH],
                buf: [MaybeUninit::uninit(); DIR_BUF],
            })
        });
        s.levels = [Level::NEW; MAX_DEPTH];
        s
    }

    pub(super) fn give_back(self: Box<Scratch>) {
        if let Ok(mut spare) = SPARE.lock() {
            spare.get_or_insert(self);
        }
    }
}

/// Frees the kept scratch: an idle daemon hands back what its runs left (the next walk makes
/// a new one).
pub(crate) fn drop_spare() {
    if let Ok(mut spare) = SPARE.lock() {
        spare.take();
    }
}
