//! Warnings about a valid config that will not do what its admin likely meant: nothing here
//! stops a daemon, each says what will happen and what to change. Pure: what needs the host
//! (file modes, folders) is in `service::preflight`, which adds these to its own.

use crate::model::config::Config;
use crate::model::duration::format;
use chrono::{DateTime, Utc};

/// The warnings `cfg` earns on its own, in the order of the file.
pub(crate) fn warnings(cfg: &Config, now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.jobs.is_empty() {
        out.push(format!(
            "{} has no [[job]]: the daemon will start and sit idle; add a [[job]] table for each job",
            cfg.path.display()
        ));
    }
    for j in &cfg.jobs {
        // `user` is how a job is kept off root; a name the database maps to uid 0 (`toor`, an
        // alias made with `useradd -o -u 0`) runs it as root all the same.
        if let Some(u) = j.user.as_deref().filter(|u| u.uid == 0) {
            out.push(format!(
                "job {:?}: its user {:?} has uid 0: the job runs as root; name an unprivileged user to keep it off root",
                j.name, u.name
            ));
        }
        let interval = j.schedule.nominal_interval(now);
        if j.timeout > interval {
            out.push(format!(
                "job {:?}: timeout {} is longer than its interval {}: a run still going when the next is due makes that one skipped (and each skipped run takes a place of keep_runs); set timeout to at most {}",
                j.name,
                format(j.timeout),
                format(interval),
                format(interval)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose `user` has uid 0 is named; one of an unprivileged user is not.
    #[test]
    fn a_user_with_uid_0_is_warned_of() {
        let text = "[daemon]\nstate_dir = \"/s\"\n[[job]]\nname = \"a\"\ncommand = [\"true\"]\nevery = \"1h\"\n[[job]]\nname = \"b\"\ncommand = [\"true\"]\nevery = \"1h\"\n";
        let path = std::path::Path::new("/c.toml");
        let mut cfg =
            crate::logic::config::parse(path, std::path::Path::new("/"), text, Utc::now())
                .unwrap()
                .config;
        let user = |name: &str, uid| crate::model::user::UserInfo {
            name: name.into(),
            uid,
            gid: uid,
            home: "/".into(),
            shell: Default::default(),
            groups: vec![],
        };
        std::sync::Arc::make_mut(&mut cfg.jobs[0]).user = Some(Box::new(user("toor", 0)));
        std::sync::Arc::make_mut(&mut cfg.jobs[1]).user = Some(Box::new(user("robot", 1000)));
        let w = warnings(&cfg, Utc::now());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("job \"a\": its user \"toor\" has uid 0"),
            "{w:?}"
        );
    }
}
