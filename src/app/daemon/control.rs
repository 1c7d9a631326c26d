//! What the daemon looks at when something it watches changes: a stop request, the heartbeat
//! (dead man switch), the run flag, edits of its config, the trust of its config and state
//! dir, its lock file, and `run-once` requests.
//!
//! There is no periodic tick. A [`crate::service::sys::Watcher`] (inotify on Linux, change
//! notifications on Windows) wakes the loop when one of these paths changes, and the loop then
//! *looks* ([`Daemon::housekeeping`]): it re-arms the watches (a directory replaced since is
//! watched anew) and runs every check. The watches are [`Daemon::watch_list`]: the state dir
//! (heartbeat, stop request, lock file, the dir itself), `requests/`, the config file in its
//! directory, and every directory and symlink on the way to the config and to the state dir
//! (a chmod of any of them must reach the trust check at once). What is not a change of a file
//! is a deadline instead ([`Daemon::next_look`]): the dead man switch fires at the last beat
//! plus its timeout, or a cached agent's last beat plus its own where that is later (see
//! [`crate::logic::agent_mode`]: a ctrl run by hand does not cut it); records that could not be written are retried with a backoff; runs
//! adopted from a previous daemon are looked for once a second while there are any. Where a
//! watch cannot be set up, the daemon says why once and looks every [`FALLBACK_POLL`].
//!
//! The heartbeat is judged by when the daemon *saw its mtime change*, on the monotonic clock:
//! any change counts as a beat, so a wall clock set forward or back neither kills a healthy
//! daemon nor keeps an orphaned one alive. One wall time is read: that of a cached beat this
//! daemon did not see itself (a sync beat carries it, `agent_mode::latest_cached`); set back,
//! it holds that mode at most one timeout longer, set forward it only lapses sooner.
//!
//! The same look answers ctrl: a new heartbeat mtime is copied to `heartbeat-ack` (see
//! [`crate::logic::liveness`]). It is written from this loop, so a daemon whose loop is stopped or
//! stuck stops answering, and only when the heartbeat changed: one write per ctrl call.

use super::shell::{Daemon, Phase};
use super::watch::FALLBACK_POLL;
use crate::logic::agent_mode::{self};
use crate::model::request::{StopMode, StopRequest};
use crate::service::state::{self};
use chrono::Utc;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// How long the loop tries to take the config's lock again (a probe holds its shared lock
/// for an instant; the loop must not wait on a real holder).
const RELOCK_PATIENCE: Duration = Duration::from_millis(100);

/// How often runs adopted from a previous daemon (not our children: no exit event) are
/// looked for while there are any.
const ADOPTED_POLL: Duration = Duration::from_secs(1);
/// First retry of a record that could not be written; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A look even when nothing changed, as a safety net for a change the watches missed; rare
/// enough to cost nothing (cron wakes every minute).
const SAFETY_LOOK: Duration = Duration::from_secs(600);
/// How long after a change of the host's zone files it is applied: chrono looks at
/// `/etc/localtime` at most once a second, so every computation after this has the new zone.
const ZONE_SETTLE: Duration = Duration::from_millis(1100);

impl Daemon {
    /// Whether a look is due now: a watched path changed, or a deadline passed.
    pub(super) fn look_due(&self, now: Instant) -> bool {
        self.control.changed || now >= self.next_look()
    }

    /// The earliest deadline of a look that no change announces (see the module doc).
    pub(super) fn next_look(&self) -> Instant {
        let c = &self.control;
        let mut at = c.last_look + SAFETY_LOOK;
        if c.degraded.is_some() {
            at = at.min(c.last_look + FALLBACK_POLL);
        }
        if self.phase == Phase::Running && !self.oneshot {
            let f = self.agent_in_force(Instant::now());
            // Just past the deadline: the check is "more than `timeout` ago". Just past a
            // cached mode's lapse: the mode in force changes.
            for t in [f.deadline, f.lapses].into_iter().flatten() {
                at = at.min(t + Duration::from_millis(1));
            }
        }
        if !self.unsaved.is_empty() {
            // Not retried yet: at once (then with the backoff).
            at = at.min(c.retry.map_or(c.last_look, |(t, _)| t));
        }
        if self.table.any_adopted() {
            at = at.min(c.last_look + ADOPTED_POLL);
        }
        if let Some(t) = c.zone_settle {
            at = at.min(t);
        }
        at
    }

    /// What the daemon watches, from the config it runs now.
    fn watch_list(&self) -> (Vec<crate::service::sys::Watch>, bool) {
        use crate::service::sys::{path_watches, Child, Watch};
        let mut w = Vec::new();
        let mut ok = true;
        if !self.oneshot {
            ok &= path_watches(&self.cfg.path, Child::Content, &mut w);
        }
        let root = &self.state.root;
        ok &= path_watches(root, Child::Entry, &mut w);
        // The path as configured, symlinks and all: repointing one moves the instance.
        ok &= path_watches(&self.cfg.daemon.state_dir, Child::Entry, &mut w);
        let name = |p: PathBuf| p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        w.push(Watch {
            dir: root.clone(),
            itself: true,
            children: vec![
                (name(self.state.heartbeat_file()), Child::Meta),
                (name(self.state.stop_file()), Child::Entry),
                (name(self.state.lock_file()), Child::Entry),
                (name(self.state.requests_dir()), Child::Entry),
                (name(self.state.status_file()), Child::Gone),
                (name(self.state.ctrl_view_file()), Child::Gone),
            ],
            new_json: false,
        });
        let requests = self.state.requests_dir();
        if requests.is_dir() && !self.oneshot {
            w.push(Watch {
                dir: requests,
                itself: false,
                children: Vec::new(),
                new_json: true,
            });
        }
        if let Some(flag) = &self.control.run_flag {
            ok &= path_watches(flag, Child::Content, &mut w);
        }
        // The config's lock file (and every folder on its way): removed under this daemon, it
        // is taken again at once (see `check_config_lock`), before a second daemon can start.
        if let Some(lock) = self.config_lock.as_ref().and_then(|l| l.path()) {
            ok &= path_watches(lock, Child::Entry, &mut w);
        }
        for source in self.envs_sources() {
            ok &= path_watches(source, Child::Content, &mut w);
        }
        // Who a job's user is can change under the config (see `reload_config`).
        if self.control.users_stamp.is_some() {
            for file in crate::service::sys::USER_DATABASE {
                ok &= path_watches(std::path::Path::new(file), Child::Content, &mut w);
            }
        }
        // The host's time zone: cron schedules are in its wall clock (see `look_at_zone`).
        if !self.oneshot && self.control.zone_stamp.is_some() {
            for file in crate::service::sys::zone::ZONE_FILES {
                ok &= path_watches(std::path::Path::new(file), Child::Content, &mut w);
            }
        }
        (w, ok)
    }

    /// The host's time zone changed (`/etc/localtime` relinked): cron jobs are planned again
    /// in the new zone and the status names it. chrono, which every wall-clock computation of
    /// this process goes through (croner too), reads `/etc/localtime` again when its mtime
    /// changed, but looks at most once a second: the change is applied [`ZONE_SETTLE`] after
    /// it was seen, when every later computation has the new zone. With `TZ` set, `TZ` is the
    /// zone (`start --foreground`): nothing is watched and nothing changes.
    fn look_at_zone(&mut self) {
        if self.oneshot || self.control.zone_stamp.is_none() {
            return;
        }
        let now = crate::service::zone::host_stamp();
        if now != self.control.zone_stamp {
            self.control.zone_stamp = now;
            self.control.zone_settle = Some(Instant::now() + ZONE_SETTLE);
        }
        if self
            .control
            .zone_settle
            .is_some_and(|t| Instant::now() >= t)
        {
            self.control.zone_settle = None;
            self.rezone(crate::service::zone::in_force());
        }
    }

    /// Watches what [`Daemon::watch_list`] names now; logs once why not all of it can be.
    fn arm_watches(&mut self) {
        let Some(watcher) = &self.control.watcher else {
            return;
        };
        let (list, ok) = self.watch_list();
        let mut problems = watcher.arm(&list);
        if !ok {
            problems.push("a watched path cannot be followed (a symlink loop?)".into());
        }
        // A config that is not there is watched for by name in the deepest folder that is,
        // which a mount coming back over a folder on the way does not change: besides the
        // mount table (see the watcher), the fallback poll looks until it is back.
        if !self.oneshot && std::fs::metadata(&self.cfg.path).is_err() {
            problems.push(format!("the config {} is missing", self.cfg.path.display()));
        }
        let why = (!problems.is_empty()).then(|| problems.join("; "));
        if why != self.control.degraded {
            match &why {
                Some(w) => warn!(
                    "{w}; looking every {}s besides the watches",
                    FALLBACK_POLL.as_secs()
                ),
                None if self.control.degraded.is_some() => info!("all watches are set up again"),
                None => {}
            }
            self.control.degraded = why;
        }
    }

    pub(super) fn housekeeping(&mut self) {
        self.control.changed = false;
        self.control.last_look = Instant::now();
        // Armed before the checks: a change during them wakes the loop again.
        self.arm_watches();
        self.check_state_dir_trust();
        self.check_state_dir_moved();
        self.check_lock_file();
        self.check_published();
        self.check_config_lock();
        self.check_stop_request();
        self.check_heartbeat();
        if let Some(flag) = &self.control.run_flag {
            if !flag.exists() {
                let why = format!("run flag {} is gone", flag.display());
                self.drain(&why);
            }
        }
        if !self.oneshot {
            self.reload_config(false);
            self.ingest_requests();
            self.envs_look();
        }
        self.poll_adopted();
        self.look_at_zone();
        self.look_at_clock();
        if self.control.retry.is_none_or(|(t, _)| Instant::now() >= t) {
            self.retry_unsaved();
            self.control.retry = match self.control.retry {
                _ if self.unsaved.is_empty() => None,
                None => Some((Instant::now() + RETRY_FIRST, RETRY_FIRST)),
                Some((_, d)) => {
                    let d = (d * 2).min(RETRY_MAX);
                    Some((Instant::now() + d, d))
                }
            };
        }
    }

    /// The state dir was trusted at start; if someone made it (or a directory above it)
    /// writable for others since, files in it may be replaced by links at any moment, and no
    /// write there is safe any more. End every run (whole trees) and exit without writing:
    /// their journals stay, and the next daemon records them as interrupted once the admin
    /// has fixed the permissions (ctrl refuses to start one before, and says why).
    fn check_state_dir_trust(&mut self) {
        // The folder it writes in, and the path as configured while it leads there (once it
        // leads elsewhere the daemon hands over instead, writing nothing there).
        let configured = &self.cfg.daemon.state_dir;
        let trust = crate::service::security::check_state_dir(&self.state.root).and_then(|()| {
            if crate::service::sys::resolved_dir(configured).as_ref() == Some(&self.state.root) {
                crate::service::security::check_state_dir(configured)
            } else {
                Ok(())
            }
        });
        let Err(e) = trust else {
            return;
        };
        tracing::error!("{e}; ending {} run(s) and exiting", self.table.in_flight());
        for run in self.table.runs() {
            self.spawner.kill_tree(run.pgid, &run.dir());
        }
        std::process::exit(1);
    }

    /// The daemon keeps the folder its `state_dir` led to at start (see `start.rs`). If the
    /// path now leads to another folder (a symlink on the way repointed), the instance has
    /// moved, as if the config named another state dir: ctrl, `status` and the agent look
    /// there from now, so this daemon drains in its own folder (its runs end and are recorded
    /// there) and exits; the next ctrl starts a daemon in the new one. Never both folders.
    fn check_state_dir_moved(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(now) = crate::service::sys::resolved_dir(&self.cfg.daemon.state_dir) else {
            return; // gone: the lock check makes it again (see `check_lock_file`)
        };
        if now != self.state.root {
            let why = format!(
                "the state dir {} now leads to {}, not to {}; handing over to a daemon there",
                self.cfg.daemon.state_dir.display(),
                now.display(),
                self.state.root.display()
            );
            self.drain(&why);
            self.let_config_go();
        }
    }

    fn check_heartbeat(&mut self) {
        let m = self.state.heartbeat_mtime();
        self.answer_heartbeat(m);
        if m != self.control.hb_mtime {
            let now = Instant::now();
            self.control.hb_mtime = m;
            self.control.hb_seen = now;
            // Read only when it changed: a ctrl moved between sync and cached mode, or one
            // was run by hand.
            let beat = self.state.read_beat();
            // A sync beat also names the last cached one: this daemon may not have seen it.
            self.control.cached = agent_mode::latest_cached(
                self.control.cached.take(),
                &beat,
                now,
                state::unix_ms(SystemTime::now()),
            );
            self.control.beat = beat;
        }
        let now = Instant::now();
        let f = self.agent_in_force(now);
        // A one-shot run (`run-once` without a daemon) ends by itself; no agent feeds it.
        let running = self.phase == Phase::Running && !self.oneshot;
        if let Some(deadline) = f.deadline.filter(|d| running && now > *d) {
            // In the words of the mode that was in force until then.
            let last = self.agent_in_force(deadline);
            let why = format!(
                "heartbeat stale: no ctrl for {} (heartbeat_timeout, agent mode {})",
                last.timeout
                    .map_or("?".into(), crate::model::duration::format),
                agent_mode::describe(&last.interval)
            );
            self.drain(&why);
            return;
        }
        self.publish(f);
    }

    /// The agent mode in force at `now` and the dead man switch's deadline, from ctrl's beats
    /// and the config's `heartbeat_timeout` and `agent_cache_age`.
    fn agent_in_force(&self, now: Instant) -> agent_mode::InForce {
        let c = &self.control;
        agent_mode::in_force(
            agent_mode::Seen {
                beat: &c.beat,
                at: c.hb_seen,
            },
            c.cached
                .as_ref()
                .map(|(beat, at)| agent_mode::Seen { beat, at: *at }),
            self.cfg.daemon.heartbeat_timeout,
            self.cfg.daemon.agent_cache_age,
            now,
        )
    }

    /// Puts the agent mode and the timeout in force into the status (and the log on a change).
    pub(super) fn publish_agent_mode(&mut self) {
        self.publish(self.agent_in_force(Instant::now()));
    }

    /// Puts the mode `f` into the status when it or its timeout changed (and into the log
    /// when the mode did).
    fn publish(&mut self, f: agent_mode::InForce) {
        let mode = agent_mode::describe(&f.interval);
        let timeout_s = f.timeout.map(|d| d.as_secs_f64());
        let info = self.shown.info();
        let same_mode = info.agent_mode.as_ref() == Some(&mode);
        if same_mode && info.heartbeat_timeout_s == timeout_s {
            return;
        }
        if !same_mode {
            info!(
                heartbeat_timeout = %f.timeout.map_or("off".into(), crate::model::duration::format),
                "agent mode: {mode}"
            );
        }
        self.set_agent_mode(mode, f.timeout);
    }

    /// Tells ctrl that this loop still runs: copies a heartbeat mtime not answered yet to
    /// `heartbeat-ack`. A failure is a state error (ctrl then shows it instead of calling
    /// the daemon unresponsive) and is retried on the next tick.
    fn answer_heartbeat(&mut self, seen: Option<SystemTime>) {
        let Some(m) = seen.filter(|m| Some(*m) != self.control.acked) else {
            return;
        };
        match self.state.ack_heartbeat(m) {
            Ok(()) => {
                self.control.acked = Some(m);
                self.state_ok("heartbeat-ack");
            }
            Err(e) => {
                self.state_failure("heartbeat-ack", format!("cannot answer the heartbeat: {e}"))
            }
        }
    }

    /// Claims a stop request atomically (renames it to a name only this process uses, then
    /// reads it), so a request written meanwhile is a new file seen next time, never lost.
    /// A request from before this daemon took its lock was meant for a predecessor: ignored
    /// (and removed, being claimed). Returns whether a request was acted on.
    fn check_stop_request(&mut self) -> bool {
        let path = self.state.stop_file();
        let claimed = self
            .state
            .root
            .join(format!(".stop-request.claimed.{}", std::process::id()));
        match std::fs::rename(&path, &claimed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                warn!("cannot claim the stop request {}: {e}", path.display());
                return false;
            }
        }
        let read = state::read_json::<StopRequest>(&claimed);
        let _ = std::fs::remove_file(&claimed);
        let req = match read {
            Ok(Some(r)) if r.requested < self.control.locked_at => {
                info!(
                    requested = %crate::model::record::ts(r.requested),
                    "ignoring a stop request from before this daemon started"
                );
                return false;
            }
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) => {
                warn!("unreadable stop request: {e}; stopping politely");
                StopRequest {
                    mode: StopMode::Drain,
                    requested: Utc::now(),
                    upgrade_to: None,
                }
            }
        };
        let reason = req.reason(crate::model::BUILD_ID);
        match req.mode {
            StopMode::Drain => self.drain(&reason),
            StopMode::Now => {
                info!(
                    "stop --now requested: ending {} runs in flight",
                    self.table.in_flight()
                );
                self.end_all_runs();
                self.drain(&reason);
            }
        }
        true
    }

    /// SIGTERM: a stop request file says how; without one it is a polite stop.
    pub(super) fn on_stop_signal(&mut self) {
        if self.oneshot {
            // Ctrl-C on `run-once`: end the run (its whole tree), record it, exit.
            self.end_all_runs();
        }
        if !self.check_stop_request() {
            self.drain("SIGTERM received");
        }
    }

    /// SIGUSR2 (the stop-now event on Windows): `stop --now` that could not write its request
    /// (a full disk). A request that is there all the same is claimed first (an upgrade's
    /// reason, say), then the runs in flight are ended, whatever the request said.
    pub(super) fn on_stop_now_signal(&mut self) {
        self.check_stop_request();
        info!(
            "stop --now signalled: ending {} runs in flight",
            self.table.in_flight()
        );
        self.end_all_runs();
        self.drain("stop --now requested (by signal: the stop request could not be written)");
    }

    /// `status.json` and `ctrl-view` are there, or are written again (see `republish`).
    fn check_published(&mut self) {
        if self.shown.owed() {
            return;
        }
        let gone = |p: &std::path::Path| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if gone(&self.state.status_file()) || gone(&self.state.ctrl_view_file()) {
            self.republish();
        }
    }

    /// The instance is guarded by the lock on `daemon.lock`; if that file was removed or
    /// replaced (the state dir deleted, say), the next ctrl would find no lock and start a
    /// second daemon. Take the lock on the file now at that path if nobody holds it (the
    /// instance stays guarded by this daemon); if another daemon already does, hand over:
    /// drain and exit.
    fn check_lock_file(&mut self) {
        if crate::service::sys::same_file(self.lock.file(), &self.state.lock_file()) {
            return;
        }
        if let Err(e) = self.state.ensure() {
            warn!("the lock file is gone and the state dir cannot be made again: {e}");
        }
        match crate::service::lock::acquire_within(
            &self.state.lock_file(),
            std::time::Duration::ZERO,
        ) {
            Ok(Some(new)) => {
                warn!(
                    "{} was removed or replaced; locked the new file, this daemon still guards the instance",
                    self.state.lock_file().display()
                );
                self.lock = new;
            }
            Ok(None) if self.phase == Phase::Running => {
                self.drain("the lock file was replaced and another daemon holds it now");
                // That daemon runs (and records) the due times from now.
                self.drained.another_runs_them = true;
            }
            Ok(None) => {}
            Err(e) if self.phase == Phase::Running => {
                self.drain(&format!(
                    "the instance lock file cannot be taken again: {e}"
                ));
            }
            Err(_) => {}
        }
    }

    /// The config file's lock (see `service::one_daemon`) is on the file the path named when
    /// it was taken; a config replaced by rename (an editor, config management) is another
    /// file, which nobody holds until this daemon locks it here, at its next look after the
    /// rename (the watch on the config wakes it: milliseconds). A lock file removed under the
    /// daemon (a cleaner of its folder, logind removing `/run/user/<uid>` at a logout, an
    /// admin's `rm`) is taken again the same way, its folder created again: it is watched, so
    /// the window in which a second daemon could take a new one is as short. A daemon of this
    /// config with another state dir started in that window holds the new file: that one runs
    /// the jobs now (probes find it, and it may have started runs already), and this one
    /// stands down (drains: its runs in flight finish, it starts none) and says so.
    fn check_config_lock(&mut self) {
        use crate::service::one_daemon::Taken;
        let Some(held) = &self.config_lock else {
            return;
        };
        if held.still_names(&self.cfg.path) {
            return;
        }
        let lost = held.file_lost().then(|| {
            format!(
                "the config's lock file {} was removed under this daemon (a cleaner of its folder, a logout, an admin)",
                held.path().unwrap_or(std::path::Path::new("?")).display()
            )
        });
        match crate::service::one_daemon::take_within(
            &self.cfg.path,
            &self.state.root,
            RELOCK_PATIENCE,
        ) {
            Taken::Locked(new) => {
                match &lost {
                    Some(lost) => {
                        warn!("{lost}; locked a new one, this daemon still runs its jobs")
                    }
                    None => info!(
                        "{} was replaced; locked the new file, this daemon still runs its jobs",
                        self.cfg.path.display()
                    ),
                }
                self.config_lock = Some(new);
            }
            Taken::Refused(_) if self.phase == Phase::Running => {
                let cause = lost.unwrap_or_else(|| {
                    format!("the config {} was replaced", self.cfg.path.display())
                });
                let why = crate::service::one_daemon::stand_down(
                    &self.cfg.path,
                    &cause,
                    &self.state.root,
                );
                self.drain(&why);
                // That daemon runs (and records) the due times from now.
                self.drained.another_runs_them = true;
            }
            Taken::Refused(_) => {}
            // No safe place for it now (another user planted the folder after it was
            // removed): a new daemon of the config does not start either, so this one must not
            // run on without it, where one started with another runtime dir would not see it.
            Taken::Unsafe(why) => {
                self.config_lock = None;
                if self.phase == Phase::Running {
                    let cause = lost.unwrap_or_else(|| {
                        format!("the config {} was replaced", self.cfg.path.display())
                    });
                    self.drain(&format!("{cause}, and it cannot be taken again: {why}"));
                }
            }
            // Not there for a moment, or not readable: the old file stays locked; the next
            // look tries again.
            Taken::Failed(e) => debug!("cannot lock the replaced config yet: {e}"),
        }
    }

    /// A handover (the config names another instance or state dir, or the state dir leads
    /// elsewhere now): the daemon there may start while this one's runs in flight finish, and
    /// this one starts no run any more, so it lets the config file's lock go.
    pub(super) fn let_config_go(&mut self) {
        if self.config_lock.take().is_some() {
            info!("handing over: let go of the config's lock so that the next daemon can start");
        }
    }

    /// Takes the config's lock back for a handover that is called off; false if a daemon of
    /// this config holds it now (that one runs the jobs: the handover stands).
    pub(super) fn take_config_back(&mut self) -> bool {
        use crate::service::one_daemon::Taken;
        if self.config_lock.is_some() || self.oneshot {
            return true;
        }
        match crate::service::one_daemon::take_within(
            &self.cfg.path,
            &self.state.root,
            RELOCK_PATIENCE,
        ) {
            Taken::Locked(l) => {
                self.config_lock = Some(l);
                true
            }
            Taken::Refused(why) | Taken::Failed(why) | Taken::Unsafe(why) => {
                warn!("the handover is not called off: {why}");
                false
            }
        }
    }

    /// Takes the `run-once` requests waiting in `requests/`: each is claimed by rename (so
    /// it is taken once), then queued like a due run, ignoring `overlap` (an admin asked for
    /// it) but not `max_parallel`. A request the daemon cannot serve gets `<id>.rejected`
    /// with the reason, which the waiting command shows.
    pub(super) fn ingest_requests(&mut self) {
        if self.reloading.requests_wait {
            return;
        }
        let dir = self.state.requests_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !crate::model::request::valid_request_id(id) {
                continue;
            }
            let claimed = dir.join(format!(".{id}.claimed"));
            if std::fs::rename(e.path(), &claimed).is_err() {
                continue;
            }
            let req = state::read_json::<crate::model::request::RunRequest>(&claimed);
            if let Ok(Some(r)) = &req {
                if !self.jobs.contains_key(&r.job) {
                    // The config may have been edited just before `run-once` read it: the
                    // request waits for the load (see `reload`), put back as it came.
                    self.reload_config(false);
                    if self.reloading.busy && std::fs::rename(&claimed, e.path()).is_ok() {
                        self.reloading.requests_wait = true;
                        return;
                    }
                }
            }
            let _ = std::fs::remove_file(&claimed);
            let why = match req {
                Ok(Some(r)) if r.id == id => {
                    if self.phase != Phase::Running {
                        Some("the daemon is stopping; run it again once a daemon runs".to_string())
                    } else if let Some(js) = self.jobs.get(&r.job) {
                        let job = Arc::clone(&js.job);
                        info!(job = %r.job, request = id, "run-once requested");
                        self.enqueue(super::table::Pending {
                            job,
                            due: Utc::now(),
                            trigger: crate::model::record::Trigger::RunOnce,
                            prepared: None,
                            request: Some(id.to_string()),
                        });
                        None
                    } else {
                        Some(format!(
                            "the running daemon has no job {:?} (it runs its last good config)",
                            r.job
                        ))
                    }
                }
                Ok(_) => Some("the request could not be read".to_string()),
                Err(e) => Some(format!("the request could not be read: {e}")),
            };
            if let Some(why) = why {
                warn!(request = id, "run-once request declined: {why}");
                let _ = state::write_atomic(
                    &dir.join(format!("{id}.rejected")),
                    why.as_bytes(),
                    state::Durability::NoSync,
                );
            }
        }
    }
}
