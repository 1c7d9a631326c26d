//! Who builds a Python environment: the job's `user`, else the unprivileged `[daemon]
//! build_user` when the daemon is root, else the daemon itself ([`builder_for`]); the build
//! user's lookup on a thread of its own, so that a user database that hangs holds no caller
//! ([`BuildUserLookup`]); and the words for a builder and for a venv its user cannot reach.

use crate::model::user::UserInfo;
use std::path::Path;

/// How a builder is named in the state and the status.
pub(crate) fn builder_label(u: &UserInfo) -> String {
    format!("{} (uid {})", u.name, u.uid)
}

/// The user `[daemon] build_user` names, as the builds of jobs without a `user` run: it must
/// exist and must not be root (a build as root runs whatever the requirements reach as root).
pub(crate) fn resolve_build_user(name: &str) -> Result<UserInfo, String> {
    let u = crate::service::sys::lookup_user(name).map_err(|e| {
        format!(
            "environments of jobs without a `user` are built as the unprivileged user {name:?} \
             ([daemon] build_user), never as root: {e}. Create it (the .deb does: useradd \
             --system --user-group --no-create-home --home-dir /nonexistent --shell \
             /usr/sbin/nologin {name}) or name another unprivileged user in [daemon] build_user; \
             a config reload (SIGHUP, or an edit of the config) tries again"
        )
    })?;
    if u.uid == 0 {
        return Err(format!(
            "[daemon] build_user {name:?} is root (uid 0): environments are never built as \
             root; name an unprivileged user"
        ));
    }
    Ok(u)
}

/// How long the environments' worker waits for the build user's lookup before it calls the
/// user database stuck (at most; never longer than `env_build_timeout`): the lookup is part
/// of the build, and a database that never answers must not hold the builds for ever.
pub(crate) const BUILD_USER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A lookup of the build user ([`resolve_build_user`]) on a thread of its own: NSS
/// (`getpwnam`, `getgrouplist`, LDAP, sssd) and `/etc/shadow` can block for ever, and that
/// must hold this thread, never the caller. Kept while unanswered, so that a database that
/// hangs holds one such thread, not one per look.
pub(crate) struct BuildUserLookup {
    name: String,
    since: std::time::Instant,
    rx: std::sync::mpsc::Receiver<Result<UserInfo, String>>,
    answer: Option<Result<UserInfo, String>>,
}

impl BuildUserLookup {
    pub(crate) fn start(name: &str) -> Result<BuildUserLookup, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = name.to_string();
        std::thread::Builder::new()
            .name("build-user".into())
            .spawn(move || {
                let _ = tx.send(resolve_build_user(&n));
            })
            .map_err(|e| format!("cannot look up the build user {name:?}: {e}"))?;
        Ok(BuildUserLookup {
            name: name.to_string(),
            since: std::time::Instant::now(),
            rx,
            answer: None,
        })
    }

    /// The user it looks up.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The answer, waiting for it up to `bound`; `None` while the database has not answered.
    pub(crate) fn wait(&mut self, bound: std::time::Duration) -> Option<Result<UserInfo, String>> {
        if self.answer.is_none() {
            self.answer = match self.rx.recv_timeout(bound) {
                Ok(r) => Some(r),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Err(format!(
                    "the lookup of the build user {:?} ended without an answer (a bug; see daemon.log)",
                    self.name
                ))),
            };
        }
        self.answer.clone()
    }

    /// Why no environment of a job without a `user` is built while the database is silent.
    pub(crate) fn waiting_words(&self) -> String {
        build_user_waiting(&self.name, self.since.elapsed())
    }
}

/// The words for a build user's lookup the user database has not answered for `took`.
fn build_user_waiting(name: &str, took: std::time::Duration) -> String {
    format!(
        "waiting for the user database: the lookup of the build user {name:?} ([daemon] \
         build_user) has had no answer for {} (LDAP, sssd or nslcd not answering?); \
         environments it builds are not built until the database answers, and the daemon \
         looks again by itself",
        crate::model::duration::human_age(took.as_secs_f64())
    )
}

/// Who builds a job's environment: its `user`, else the build user (`build_user`, resolved
/// once per config). `None`: the daemon itself, where it cannot take another identity (it is
/// not root; Windows).
pub(crate) fn builder_for(
    job_user: Option<&UserInfo>,
    build_user: &Result<UserInfo, String>,
) -> Result<Option<UserInfo>, String> {
    if !crate::service::sys::is_root() {
        return Ok(None);
    }
    match job_user {
        Some(u) if !built_by_build_user(Some(u)) => Ok(Some(u.clone())),
        _ => build_user.clone().map(Some),
    }
}

/// Whether the build user builds the environment of a job with this `user` (when the daemon
/// is root): a job without one, and one whose user is root by uid (`root`, an alias such as
/// `toor`), whose build must not run as root either. The one rule [`builder_for`] and the
/// build user's lookup share.
pub(crate) fn built_by_build_user(job_user: Option<&UserInfo>) -> bool {
    job_user.is_none_or(|u| u.uid == 0)
}

/// Why a job's user cannot reach its environment: `closed` is the folder that stops it.
pub(crate) fn unreachable_words(
    venv: &Path,
    user: &UserInfo,
    closed: &impl std::fmt::Display,
) -> String {
    format!(
        "its Python environment {} cannot be reached by {}: {closed} stops it, and the \
         user's groups ({}) do not open it (did its primary group change? the environment \
         follows the user's group at the daemon's next look at it, at once after a reload)",
        venv.display(),
        builder_label(user),
        user.groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// F7/3: an answer is waited for up to the bound, kept once it came; no answer is words
    /// that name the database and the build user.
    #[test]
    fn a_build_user_lookup_waits_only_up_to_its_bound() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut l = BuildUserLookup {
            name: "robotmk".into(),
            since: std::time::Instant::now(),
            rx,
            answer: None,
        };
        let t0 = std::time::Instant::now();
        assert!(l.wait(std::time::Duration::from_millis(50)).is_none());
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let w = l.waiting_words();
        assert!(
            w.contains("user database") && w.contains("\"robotmk\""),
            "{w}"
        );
        tx.send(Err("no such user".into())).unwrap();
        assert_eq!(
            l.wait(std::time::Duration::ZERO),
            Some(Err("no such user".into()))
        );
        drop(tx);
        assert_eq!(
            l.wait(std::time::Duration::ZERO),
            Some(Err("no such user".into()))
        );
    }
}
