//! Loading the config again, off the loop. A load looks up every job's user (NSS: a large
//! `/etc/passwd`, LDAP or sssd can take seconds per user) and reads `/etc/shadow`; on the
//! loop, 300 users in a 200,000-line passwd held every due run back some 13 s at each edit.
//! So the loop only decides that a load is due ([`Daemon::reload_config`]) and a thread of
//! its own reads, parses and looks up; what it found reaches the loop as
//! [`Event::ConfigLoaded`] and is applied there ([`Daemon::on_config_loaded`]). Runs due
//! meanwhile start on time under the running config — but for `user` jobs after the user
//! database changed, which wait until their users are looked up again
//! ([`Daemon::waits_for_users`]). One load at a time: an edit or a SIGHUP
//! during a load asks for one more after it, and a `run-once` request for a job the running
//! config does not have waits for the load.

use super::config_load::{load, Loaded};
use super::event::Event;
use super::shell::{Daemon, Phase};
use crate::model::status::ConfigErrorKind;
use crate::model::user::UserInfo;
use crate::service::config::{self};
use tracing::{error, warn};

/// How the daemon's config error starts when the config is unchanged but the user database
/// it looked its users up in changed and a user is gone or its account expired (its jobs are
/// held). Words only: what the error is, is [`ConfigErrorKind::UsersChanged`].
const USERS_CHANGED: &str = "the user database changed";

impl Daemon {
    /// Loads the config again when it changed (or when `force`d by SIGHUP): on a thread of its
    /// own, applied when it comes (see the module doc). An invalid edit keeps the running
    /// config and shows the error in the status.
    pub(super) fn reload_config(&mut self, force: bool) {
        if self.reloading.busy {
            let forced = self.reloading.again.unwrap_or(false);
            self.reloading.again = Some(forced || force);
            return;
        }
        // A config another user could have written is never read: the running config stays.
        if let Err(e) =
            crate::service::security::check_config(&self.cfg.path).map_err(|e| e.to_string())
        {
            if self.control.untrusted.as_deref() != Some(e.as_str()) {
                warn!("config not reloaded, keeping the running config: {e}");
                self.control.untrusted = Some(e.clone());
            }
            self.set_config_error(Some((ConfigErrorKind::Rejected, e)));
            return;
        }
        // Trusted again: read it whatever its stamp, to clear or replace the error.
        let force = force || self.control.untrusted.take().is_some();
        // The stamp the daemon publishes is also the one it compares with: taken before each
        // read, so an edit during a read shows as a newer stamp next time.
        let now_stamp = config::stamp(&self.cfg.path);
        // The user database too, where a job runs as a user: a user deleted, renumbered or
        // given other groups is followed, not run on as the uid looked up at the last load.
        let users_now = config::users_stamp(&self.cfg);
        let edited = now_stamp != self.shown.info().config_stamp;
        let users_changed = users_now != self.control.users_stamp;
        if !force && !edited && !users_changed {
            return;
        }
        self.reloading.stamp = now_stamp;
        self.control.users_stamp = users_now;
        crate::app::test_crash::at("reload");
        // Until this load has looked the users up again, no `user` job starts: the uid the
        // running config looked up may be another user's by now (a `userdel` and a
        // `useradd`), and a hung user database can hold a load for as long as it likes (W2
        // F1). Their runs wait (late, never as a stranger); the others start on time.
        self.reloading.users_unverified |= users_changed;
        // A user it names is gone or expired: its jobs are held (never run) rather than run
        // on as that user's old uid, which the host may give to someone else — with the
        // config as it was or as edited, should the edit come in the same look (W2 F8). A
        // reload (SIGHUP) while they are held finds the same.
        let try_hold = users_changed
            || self.shown.info().config_error_kind == Some(ConfigErrorKind::UsersChanged);
        // Should no config come of the load, the running one's users are looked up again.
        let running: Vec<UserInfo> = if self.reloading.users_unverified {
            let mut users: Vec<UserInfo> = self
                .cfg
                .jobs
                .iter()
                .filter_map(|j| j.user.as_deref().cloned())
                .collect();
            users.sort_by(|a, b| a.name.cmp(&b.name));
            users.dedup_by(|a, b| a.name == b.name);
            users
        } else {
            Vec::new()
        };
        let path = self.cfg.path.clone();
        let tx = self.tx.clone();
        let (p, t, r) = (path.clone(), tx.clone(), running.clone());
        let spawned = std::thread::Builder::new()
            .name("config".into())
            .spawn(move || {
                let _ = t.send(Event::ConfigLoaded(Box::new(load(p, try_hold, r))));
            });
        self.reloading.busy = true;
        self.reloading.since = Some(std::time::Instant::now());
        if let Err(e) = spawned {
            // No thread to be had: load here, late runs rather than a config never followed.
            error!("cannot start a thread to load the config ({e}); loading it on the loop");
            let _ = tx.send(Event::ConfigLoaded(Box::new(load(path, try_hold, running))));
        }
    }

    /// Applies what a load found (see [`Daemon::reload_config`]), then the look or the
    /// requests that waited for it.
    pub(super) fn on_config_loaded(&mut self, loaded: Loaded) {
        self.reloading.busy = false;
        self.reloading.since = None;
        // The stamp of what was read, published with what came of it (see `Reloading::stamp`).
        let stamp = self.reloading.stamp.take();
        self.set_config_stamp(stamp);
        if self.reloading.users_unverified {
            if loaded.users_verified() {
                self.reloading.users_unverified = false;
            } else {
                warn!("the user database changed and a user the running config runs jobs as is not what it was (gone, expired or changed); its jobs wait until the config loads");
            }
        }
        self.apply_loaded(loaded);
        if let Some(force) = self.reloading.again.take() {
            self.reload_config(force);
        }
        if !self.reloading.busy && std::mem::take(&mut self.reloading.requests_wait) {
            self.ingest_requests();
        }
    }

    fn apply_loaded(&mut self, loaded: Loaded) {
        let new = match (loaded.result, loaded.held) {
            (Ok(c), _) => config::compact(c),
            (Err(e), Some(held)) => {
                let msg = format!("{USERS_CHANGED}: {e}");
                match held {
                    Ok(held) => {
                        if self.shown.info().config_error.as_deref() != Some(msg.as_str()) {
                            warn!(
                                "{msg}; the jobs of users not found or expired are held, not run"
                            );
                        }
                        self.control.users_stamp = config::users_stamp(&held);
                        self.apply_config(config::compact(held));
                        // After: applying a config clears the error.
                        self.set_config_error(Some((ConfigErrorKind::UsersChanged, msg)));
                    }
                    Err(_) => {
                        warn!("{msg}; keeping the running config");
                        self.set_config_error(Some((ConfigErrorKind::UsersChanged, msg)));
                    }
                }
                return;
            }
            (Err(msg), None) => {
                if self.shown.info().config_error.as_deref() != Some(msg.as_str()) {
                    warn!("config edit rejected, keeping the running config: {msg}");
                }
                self.set_config_error(Some((ConfigErrorKind::Rejected, msg)));
                return;
            }
        };
        if new.daemon.instance != self.cfg.daemon.instance
            || new.daemon.state_dir != self.cfg.daemon.state_dir
        {
            // The next ctrl looks for the daemon where the config now points and starts one
            // there; this one must not go on running the same jobs beside it.
            if self.phase == Phase::Running {
                let why = format!(
                    "the config now names instance {} with state dir {}; handing over to a daemon there",
                    new.daemon.instance,
                    new.daemon.state_dir.display()
                );
                self.drain(&why);
                self.drained.handing_over = true;
                self.let_config_go();
            }
            return;
        }
        // Named again before the handover's drain ended (an edit taken back, a file restored):
        // this daemon goes on (see `drain`).
        if self.phase == Phase::Draining && self.drained.handing_over && self.take_config_back() {
            self.undrain();
        }
        self.control.users_stamp = config::users_stamp(&new);
        self.apply_config(new);
    }
}

impl Daemon {
    /// True when a run of `job` must wait (neither start nor have its folder made): it runs
    /// as a user not looked up again since the user database changed (see
    /// `Reloading::users_unverified`).
    pub(super) fn waits_for_users(&self, job: &crate::model::config::Job) -> bool {
        self.reloading.users_unverified && job.user.is_some()
    }
}
