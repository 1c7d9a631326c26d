//! A load of the config as it runs on its own thread (see `reload`), what it found as it
//! reaches the loop, and the loop's note of a load on its way: below the loop's state.

use crate::model::config::{Config, Users};
use crate::model::user::UserInfo;
use crate::service::config::{self};
use std::path::PathBuf;

/// The loop's side of loading the config again.
#[derive(Debug, Default)]
pub(super) struct Reloading {
    /// A load is on its way.
    pub(super) busy: bool,
    /// Asked for while one was on its way: another look after it (`true`: forced, SIGHUP).
    pub(super) again: Option<bool>,
    /// `run-once` requests put back until the load has come (see `ingest_requests`).
    pub(super) requests_wait: bool,
    /// The config file's stamp taken before the load on its way read it: published with the
    /// load's result, never before (ctrl vouches for the daemon's view of a config whose
    /// stamp the status shows with no error).
    pub(super) stamp: Option<String>,
    /// Since when the load on its way has been going.
    pub(super) since: Option<std::time::Instant>,
    /// The user database changed and no load since has looked the running config's users up
    /// again: its `user` jobs wait (see [`Loaded::users_same`]).
    pub(super) users_unverified: bool,
}

/// How long a load may take before the daemon line says it hangs: a user database (LDAP,
/// sssd, nslcd) that never answers holds the load's thread in `getpwnam`, and every edit after
/// it waits for that load.
pub(super) const LOAD_STUCK: std::time::Duration = std::time::Duration::from_secs(30);

impl Reloading {
    /// The daemon line's words for a load that has taken longer than [`LOAD_STUCK`].
    pub(super) fn stuck(&self, now: std::time::Instant) -> Option<String> {
        let took = now.saturating_duration_since(self.since?);
        (self.busy && took >= LOAD_STUCK).then(|| {
            format!(
                "the config load begun {} ago has not finished (it looks up the jobs' users: is the user database answering?); edits since are not applied",
                crate::model::duration::human_age(took.as_secs_f64())
            )
        })
    }

    /// When a load on its way is to be called stuck.
    pub(super) fn stuck_at(&self) -> Option<std::time::Instant> {
        self.since.filter(|_| self.busy).map(|s| s + LOAD_STUCK)
    }
}

/// What a load found, as it reaches the loop.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The config, parsed and with its users looked up; not yet copied compactly.
    pub(super) result: Result<Config, String>,
    /// When the load failed and its users may be why: the config with the jobs of users not
    /// found or expired held.
    pub(super) held: Option<Result<Config, String>>,
    /// When no config came of the load: whether each user the running config runs jobs as
    /// is still the same (uid, groups, home, shell; not gone, not expired), looked up again.
    /// A rejected edit seen with a `userdel` must not leave the deleted user's jobs running
    /// on as its old uid, which `useradd` gives to the next user (W2 F8).
    pub(super) users_same: bool,
}

impl Loaded {
    /// Whether the users of the config the daemon runs after this load were looked up
    /// since the user database changed: a config came of the load (its users looked up, the
    /// gone ones' jobs held), or the running one's users were found unchanged.
    pub(super) fn users_verified(&self) -> bool {
        self.result.is_ok() || matches!(self.held, Some(Ok(_))) || self.users_same
    }
}

/// The load itself (on the load's thread): the config, and should it fail where a user may
/// be why, the config with those users' jobs held; should nothing come of it, whether the
/// `running` users (the running config's, when the user database changed) are unchanged.
pub(super) fn load(path: PathBuf, try_hold: bool, running: Vec<UserInfo>) -> Loaded {
    let done = std::panic::catch_unwind(|| {
        let result = config::load(&path).map_err(|e| e.to_string());
        let held = (result.is_err() && try_hold)
            .then(|| config::load_with(&path, Users::LookUpOrHold).map_err(|e| e.to_string()));
        (result, held)
    });
    let (result, held) = done.unwrap_or_else(|_| {
        (
            Err("loading the config failed (a bug; see daemon.log)".to_string()),
            None,
        )
    });
    let mut loaded = Loaded {
        result,
        held,
        users_same: false,
    };
    if !loaded.users_verified() {
        loaded.users_same = running
            .iter()
            .all(|u| crate::service::sys::lookup_user(&u.name).is_ok_and(|now| now == *u));
    }
    loaded
}
