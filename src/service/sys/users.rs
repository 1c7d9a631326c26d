//! Looking up the user a job runs as (`user = "…"`): its uid, gid, home, shell and groups.
//!
//! Which way depends on how the binary was linked, decided at build time
//! (`target_feature = "crt-static"`), never at run time:
//!
//! - **Dynamically linked** (the .deb's build): the host's own user database through glibc's
//!   NSS (`getpwnam_r`, `getgrouplist`, by the `nix` crate), so users from LDAP, sssd or
//!   systemd (`DynamicUser`, systemd-homed) work as they do for `id` or `ls`.
//! - **Statically linked** (the tarball's build): glibc's NSS must never run in a static
//!   binary. It loads the host's modules (`libnss_systemd.so.2`, `libnss_sss.so.2`) built
//!   against the host's shared glibc into a process that has its own copy of glibc, and
//!   crashes (SIGSEGV in `libnss_systemd.so.2` with Debian's `passwd: files systemd`: ctrl
//!   printed nothing, a config edit killed the daemon). So the static build asks the host's
//!   own `getent passwd NAME` and `getent initgroups NAME`, which use the host's NSS safely
//!   in a process of their own (bounded in time and output), and where the host has no
//!   trusted `getent`, reads `/etc/passwd` and `/etc/group` itself.
//!
//! Either way, a user that is not there is an error naming the user and where it was looked
//! for, which the config reports as its own.
//!
//! An account that is there but **expired** (shadow's `sp_expire`, set by `chage -E` or
//! `usermod --expiredate`, is today or earlier) is an error too, as cron's PAM account check
//! (`pam_unix`) refuses it: an admin who expires an account expects its jobs to stop. So is
//! one whose password expired and was not changed within its inactive days (`chage -M` and
//! `-I`: `sp_lstchg + sp_max + sp_inact` days have passed), which `pam_unix` refuses as an
//! expired account too. Both builds read the host's own `/etc/shadow` (what `chage` and
//! `usermod` edit), not NSS's `shadow:`: systemd's NSS module marks its records locked with an
//! expiry of day 1 (a `DynamicUser`, which the .deb's build ran jobs as, read expired), and a
//! directory's users (LDAP, sssd) have their account policy enforced by the directory at
//! login, which this host's shadow data does not show. No entry in `/etc/shadow` is not
//! expired; a locked password (`!` before the hash) does not matter, nor does a
//! password that must merely be changed (`chage -d 0`, or its maximum age passed without
//! inactive days), as the daemon never asks for the password (cron refuses those; the daemon
//! runs them).

use super::{UserInfo, UserLookupError};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Looks `name` up (done when the config is loaded: nothing of this may run between fork and
/// exec).
pub(crate) fn lookup_user(name: &str) -> Result<UserInfo, UserLookupError> {
    check_name(name)?;
    #[cfg(not(target_feature = "crt-static"))]
    let info = nss::lookup(name)?;
    #[cfg(target_feature = "crt-static")]
    let info = without_nss(name)?;
    match expired_on(ageing_in(Path::new(SHADOW), name)?, today()) {
        Some(on) => Err(UserLookupError::Expired {
            name: name.to_string(),
            on,
        }),
        None => Ok(info),
    }
}

/// Where an account's expiry date and password ageing are read, by both builds.
const SHADOW: &str = "/etc/shadow";

/// Today as shadow counts days: since 1970-01-01, UTC (as `pam_unix` takes it).
fn today() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(86_400)
}

/// What of an account's shadow entry says whether it may run: days since 1970-01-01 (`lastchg`,
/// `expire`) and counts of days (`max`, `inact`); negative or `None`: not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ageing {
    /// `sp_lstchg`: the day the password was last changed (0: it must be changed).
    lastchg: Option<i64>,
    /// `sp_max`: the days a password is valid after `lastchg`.
    max: Option<i64>,
    /// `sp_inact`: the days after the password expired in which it may still be changed.
    inact: Option<i64>,
    /// `sp_expire`: the day the account expires.
    expire: Option<i64>,
}

fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|&d| d >= 0)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
fn date_of(day: i64) -> Option<String> {
    let date = chrono::DateTime::from_timestamp(day.checked_mul(86_400)?, 0)?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// Why an account may not run `today`, as `pam_unix`'s account check has it: the date it
/// expired on (`YYYY-MM-DD`), with why when that is its password's age. Expired from its
/// expiry day (`sp_expire`) on (so `chage -E 0` expires an account), and once its password
/// expired and was not changed within its inactive days: more than `max + inact` days after
/// `lastchg` (for `lastchg` > 0, `max` and `inact` set). A password that must be changed
/// (`lastchg` 0, or `max` passed without `inact`) does not expire the account: the daemon
/// never asks for it.
fn expired_on(a: Ageing, today: i64) -> Option<String> {
    let by_date = set(a.expire).filter(|&d| d <= today);
    let by_age = match (a.lastchg.filter(|&d| d > 0), set(a.max), set(a.inact)) {
        (Some(last), Some(max), Some(inact)) => {
            let pw_expired = last.checked_add(max)?;
            // `today - lastchg > max + inact`: refused from the day after that.
            let day = pw_expired.checked_add(inact)?.checked_add(1)?;
            (day <= today).then_some((day, pw_expired, inact))
        }
        _ => None,
    };
    match (by_date, by_age) {
        (Some(d), Some((age, ..))) if d <= age => date_of(d),
        (_, Some((day, pw_expired, inact))) => Some(format!(
            "{} (its password expired on {} and was not changed within {inact} inactive day{})",
            date_of(day)?,
            date_of(pw_expired)?,
            if inact == 1 { "" } else { "s" }
        )),
        (Some(d), None) => date_of(d),
        (None, None) => None,
    }
}

/// The dates (expiry, password ageing) of `name` in the file `shadow` (the format of
/// `/etc/shadow`): none set when the file has no entry for `name` or no file is there, or
/// when this process may not read it (only root may, and only a daemon running as root runs
/// jobs as other users).
fn ageing_in(shadow: &Path, name: &str) -> Result<Ageing, UserLookupError> {
    let text = match read_capped(shadow) {
        Ok(t) => t,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(Ageing::default())
        }
        Err(e) => {
            return Err(UserLookupError::Failed {
                name: name.to_string(),
                looked: shadow.display().to_string(),
                source: io::Error::new(e.kind(), format!("{}: {e}", shadow.display())),
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(parse_shadow_line)
        .find(|(n, _)| *n == name)
        .map(|(_, a)| a)
        .unwrap_or_default())
}

/// `name:password:lastchg:min:max:warn:inactive:expire:flag` as (name, its dates); a field is
/// `None` when empty or not a number. `None` for a comment, a NIS line or a malformed one.
fn parse_shadow_line(line: &str) -> Option<(&str, Ageing)> {
    let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
    if f.len() < 8 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
        return None;
    }
    let day = |i: usize| f[i].trim().parse().ok();
    Some((
        f[0],
        Ageing {
            lastchg: day(2),
            max: day(4),
            inact: day(6),
            expire: day(7),
        },
    ))
}

/// Refuses what no user database holds, and what `getent` would take for an option or a uid.
fn check_name(name: &str) -> Result<(), UserLookupError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > 256 {
        "it is longer than 256 bytes"
    } else if name.starts_with('-') {
        "it starts with '-'"
    } else if name
        .chars()
        .any(|c| c == ':' || c == ',' || c.is_whitespace() || c.is_control())
    {
        "it contains ':', ',', a space or a control character"
    } else {
        return Ok(());
    };
    Err(UserLookupError::InvalidName {
        name: name.to_string(),
        why,
    })
}

#[cfg(not(target_feature = "crt-static"))]
mod nss {
    use super::super::{UserInfo, UserLookupError};
    use nix::unistd::{getgrouplist, User};

    const HOW: &str = "the host's user database (NSS)";

    pub(super) fn lookup(name: &str) -> Result<UserInfo, UserLookupError> {
        let failed = |e: nix::Error| UserLookupError::Failed {
            name: name.to_string(),
            looked: HOW.into(),
            source: e.into(),
        };
        let Some(u) = User::from_name(name).map_err(failed)? else {
            return Err(UserLookupError::NotFound {
                name: name.to_string(),
                looked: HOW.into(),
            });
        };
        let cname = std::ffi::CString::new(name).map_err(|_| UserLookupError::InvalidName {
            name: name.to_string(),
            why: "it contains a NUL byte",
        })?;
        let groups = getgrouplist(&cname, u.gid).map_err(failed)?;
        Ok(UserInfo {
            name: name.to_string(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell.to_string_lossy().into_owned(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        })
    }
}

/// Where a static build finds `getent`: only these, and only when root owns them and the
/// folders above (the daemon runs it as root).
const GETENT: [&str; 2] = ["/usr/bin/getent", "/bin/getent"];
/// How long one `getent` may take: an LDAP server that does not answer must not hold a
/// config load for long.
const GETENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of `getent`'s output read, and of `/etc/passwd` or `/etc/group`.
const READ_CAP: u64 = 16 * 1024 * 1024;

/// The static build's lookup: `getent` where the host has a trusted one, else the files.
#[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
fn without_nss(name: &str) -> Result<UserInfo, UserLookupError> {
    let getent = GETENT
        .iter()
        .map(Path::new)
        .find(|p| p.is_file() && super::check_path_trust(p, "getent", false).is_ok());
    match getent {
        Some(g) => via_getent(g, name),
        None => in_files(Path::new("/etc/passwd"), Path::new("/etc/group"), name),
    }
}

/// Asks the host's `getent` (its own process, the host's NSS).
#[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
fn via_getent(getent: &Path, name: &str) -> Result<UserInfo, UserLookupError> {
    let looked = format!(
        "`{} passwd`: the host's user database; this static build does not load NSS modules itself",
        getent.display()
    );
    let failed = |source: io::Error| UserLookupError::Failed {
        name: name.to_string(),
        looked: looked.clone(),
        source,
    };
    // Found or not is told by the output, not the exit status: a matching line is the user.
    let out = run_bounded(getent, &["passwd", name]).map_err(failed)?;
    let entry = out
        .lines()
        .filter_map(parse_passwd_line)
        .find(|e| e.name == name);
    let Some(e) = entry else {
        return Err(UserLookupError::NotFound {
            name: name.to_string(),
            looked,
        });
    };
    // `NAME gid gid…`: the supplementary groups, without the primary one.
    let out = run_bounded(getent, &["initgroups", name]).map_err(failed)?;
    let mut groups = vec![e.gid];
    for line in out.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some(name) {
            continue;
        }
        for g in f {
            let gid = g.parse().map_err(|_| {
                failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("`getent initgroups {name}` printed {g:?} for a group id"),
                ))
            })?;
            if !groups.contains(&gid) {
                groups.push(gid);
            }
        }
    }
    Ok(e.user(name, groups))
}

/// Reads `passwd` and `group` (the format of `/etc/passwd` and `/etc/group`).
#[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
fn in_files(passwd: &Path, group: &Path, name: &str) -> Result<UserInfo, UserLookupError> {
    let looked = format!(
        "{}; this static build reads only {} and {} (the host has no getent to ask its user database): users from LDAP, sssd or systemd need the .deb's build",
        passwd.display(),
        passwd.display(),
        group.display()
    );
    let read = |p: &Path| {
        read_capped(p).map_err(|e| UserLookupError::Failed {
            name: name.to_string(),
            looked: looked.clone(),
            source: io::Error::new(e.kind(), format!("{}: {e}", p.display())),
        })
    };
    let entry = read(passwd)?
        .lines()
        .filter_map(parse_passwd_line)
        .find(|e| e.name == name);
    let Some(e) = entry else {
        return Err(UserLookupError::NotFound {
            name: name.to_string(),
            looked,
        });
    };
    let mut groups = vec![e.gid];
    for line in read(group)?.lines() {
        // name:password:gid:member,member
        let f: Vec<&str> = line.split(':').collect();
        let (Some(gid), Some(members)) = (f.get(2), f.get(3)) else {
            continue;
        };
        let Ok(gid) = gid.parse::<u32>() else {
            continue;
        };
        if members.split(',').any(|m| m.trim() == name) && !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    Ok(e.user(name, groups))
}

/// One line of `/etc/passwd` (or of `getent passwd`).
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: String,
}

impl PasswdEntry {
    /// The user looked up as `name`, with its groups (the primary one first): one shape
    /// whichever way the entry was found.
    #[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
    fn user(self, name: &str, groups: Vec<u32>) -> UserInfo {
        UserInfo {
            name: name.to_string(),
            uid: self.uid,
            gid: self.gid,
            home: self.home,
            shell: self.shell,
            groups,
        }
    }
}

/// `name:password:uid:gid:gecos:home:shell`; `None` for a comment, a NIS `+`/`-` line or
/// anything malformed.
fn parse_passwd_line(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
    if f.len() != 7 || f[0].is_empty() || f[0].starts_with(['#', '+', '-']) {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
        shell: f[6].to_string(),
    })
}

fn read_capped(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(READ_CAP)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Runs `program args…` with an empty environment and returns its stdout, at most
/// [`READ_CAP`] bytes, ending it after [`GETENT_TIMEOUT`].
fn run_bounded(program: &Path, args: &[&str]) -> io::Result<String> {
    use std::process::{Command, Stdio};
    // A child of the daemon's own (see `sys::children`): recorded, so that a subreaper's
    // spawner never takes it for an orphan of a run; collected below through the record.
    let (pid, mut child) = super::children::start(|| {
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        Ok((child.id(), child))
    })
    .map_err(|e| io::Error::new(e.kind(), format!("cannot start it: {e}")))?;
    let wait = |child: &mut std::process::Child| {
        super::children::wait_exited(pid);
        super::children::collect(pid, || child.wait())
    };
    let Some(stdout) = child.stdout.take() else {
        return Err(io::Error::other("no pipe from it"));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("getent".into())
        .spawn(move || {
            let mut out = Vec::new();
            let r = stdout.take(READ_CAP).read_to_end(&mut out).map(|_| out);
            let _ = tx.send(r);
        })?;
    let out = match rx.recv_timeout(GETENT_TIMEOUT) {
        Ok(r) => r,
        Err(_) => {
            // Our own child, not reaped yet: the PID is still its.
            let _ = child.kill();
            let _ = wait(&mut child);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}s", GETENT_TIMEOUT.as_secs()),
            ));
        }
    };
    // The status only explains: whether the user exists is told by the output.
    let status = wait(&mut child).ok();
    let out = out?;
    if out.is_empty() {
        if let Some(code) = status
            .and_then(|s| s.code())
            .filter(|c| ![0, 2].contains(c))
        {
            return Err(io::Error::other(format!("it exited with code {code}")));
        }
        if let Some(sig) = status.and_then(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.signal()
        }) {
            return Err(io::Error::other(format!("it was killed by signal {sig}")));
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passwd_line_is_read_and_odd_ones_are_skipped() {
        assert_eq!(
            parse_passwd_line("robot:x:1001:1002:Robot,,,:/home/robot:/bin/bash"),
            Some(PasswdEntry {
                name: "robot".into(),
                uid: 1001,
                gid: 1002,
                home: "/home/robot".into(),
                shell: "/bin/bash".into(),
            })
        );
        for odd in [
            "# a comment",
            "+@netgroup::::::",
            "-baduser:x:1:1::/:/bin/sh",
            "short:x:1:1",
            "nouid:x:abc:1::/:/bin/sh",
            "",
        ] {
            assert_eq!(parse_passwd_line(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn an_account_is_expired_from_its_expiry_day_on_and_never_without_one() {
        // 2026-12-05 is day 20_792.
        let today = 20_792;
        let expired_on = |expire: Option<i64>, today| {
            expired_on(
                Ageing {
                    expire,
                    ..Ageing::default()
                },
                today,
            )
        };
        assert_eq!(expired_on(Some(0), today).as_deref(), Some("1970-01-01"));
        assert_eq!(expired_on(Some(1), today).as_deref(), Some("1970-01-02"));
        assert_eq!(
            expired_on(Some(today), today).as_deref(),
            Some("2026-12-05")
        );
        assert_eq!(expired_on(Some(today + 1), today), None, "expires tomorrow");
        assert_eq!(expired_on(Some(-1), today), None, "`chage -E -1`: never");
        assert_eq!(expired_on(None, today), None);
    }

    /// `pam_unix`: refused once `today - lastchg > max + inact` (the password expired and was
    /// not changed within its inactive days), for `lastchg` > 0 and `max`, `inact` set. A
    /// password that must merely be changed is no reason to hold the account's jobs.
    #[test]
    fn an_account_whose_password_expired_past_its_inactive_days_is_expired() {
        // `chage -d 2020-01-01 -M 10 -I 0`: 2020-01-01 is day 18_262.
        let aged = |lastchg, max, inact| Ageing {
            lastchg: Some(lastchg),
            max: Some(max),
            inact: Some(inact),
            expire: Some(-1),
        };
        let today = 20_792;
        assert_eq!(
            expired_on(aged(18_262, 10, 0), today).as_deref(),
            Some(
                "2020-01-12 (its password expired on 2020-01-11 and was not changed within 0 \
                 inactive days)"
            )
        );
        // The last day of the inactive days still runs; the day after does not.
        let (last, max, inact) = (20_700, 60, 31);
        assert_eq!(expired_on(aged(last, max, inact), last + max + inact), None);
        assert!(
            expired_on(aged(last, max, inact), last + max + inact + 1).is_some_and(|w| w
                .starts_with("2026-12-05 (its password expired on 2026-11-03 ")
                && w.ends_with("within 31 inactive days)"))
        );
        assert_eq!(
            expired_on(aged(last, 60, 1), today).as_deref(),
            Some("2026-11-05 (its password expired on 2026-11-03 and was not changed within 1 inactive day)")
        );
        // Only to be changed: `chage -d 0`, no inactive days, no maximum age, ageing off.
        assert_eq!(expired_on(aged(0, 10, 0), today), None, "lastchg 0");
        assert_eq!(expired_on(aged(18_262, 10, -1), today), None, "no -I");
        assert_eq!(expired_on(aged(18_262, -1, 0), today), None, "no -M");
        assert_eq!(expired_on(aged(-1, 10, 0), today), None, "lastchg empty");
        assert_eq!(
            expired_on(
                Ageing {
                    lastchg: Some(18_262),
                    max: None,
                    inact: Some(0),
                    expire: None
                },
                today
            ),
            None
        );
        // Changed in the future (a wrong clock): not expired.
        assert_eq!(expired_on(aged(today + 5, 0, 0), today), None);
        // Huge counts do not overflow.
        assert_eq!(expired_on(aged(18_262, i64::MAX, 5), today), None);
        // Both: the earlier date is named.
        let both = Ageing {
            expire: Some(18_000),
            ..aged(18_262, 10, 0)
        };
        assert_eq!(expired_on(both, today).as_deref(), Some("2019-04-14"));
        let both = Ageing {
            expire: Some(20_000),
            ..aged(18_262, 10, 0)
        };
        assert!(expired_on(both, today).is_some_and(|w| w.starts_with("2020-01-12 (its password")));
    }

    #[test]
    fn the_shadow_file_gives_the_expiry_day_and_locking_is_not_expiry() {
        let d = tempfile::tempdir().unwrap();
        let shadow = d.path().join("shadow");
        std::fs::write(
            &shadow,
            "root:*:19000:0:99999:7:::\n\
             # a comment\n\
             gone:!$6$salt$hash:19000:0:99999:7::1:\n\
             locked:!$6$salt$hash:19000:0:99999:7:::\n\
             never:x:19000:0:99999:7::-1:\n\
             aged:x:18262:0:10:7:0::\n\
             change:x:0:0:10:7:0::\n\
             short:x:1\n",
        )
        .unwrap();
        let expire_day_in = |name| ageing_in(&shadow, name).unwrap().expire;
        assert_eq!(expire_day_in("gone"), Some(1));
        assert_eq!(expire_day_in("locked"), None);
        assert_eq!(expire_day_in("never"), Some(-1));
        assert_eq!(
            expired_on(ageing_in(&shadow, "never").unwrap(), today()),
            None
        );
        assert_eq!(
            expired_on(ageing_in(&shadow, "locked").unwrap(), today()),
            None
        );
        assert_eq!(
            ageing_in(&shadow, "aged").unwrap(),
            Ageing {
                lastchg: Some(18_262),
                max: Some(10),
                inact: Some(0),
                expire: None
            }
        );
        assert!(expired_on(ageing_in(&shadow, "aged").unwrap(), today())
            .is_some_and(|w| w.contains("its password expired on 2020-01-11")));
        assert_eq!(
            expired_on(ageing_in(&shadow, "change").unwrap(), today()),
            None,
            "`chage -d 0`: to be changed, not expired"
        );
        assert_eq!(expire_day_in("short"), None);
        assert_eq!(expire_day_in("ldap-only"), None, "no entry");
        let none = d.path().join("no-shadow");
        assert_eq!(
            ageing_in(&none, "gone").unwrap(),
            Ageing::default(),
            "no file"
        );
    }

    #[test]
    fn names_that_no_database_holds_are_refused_before_any_lookup() {
        for bad in ["", "-x", "a:b", "a b", "a,b", "a\nb", "a\0b"] {
            assert!(
                matches!(check_name(bad), Err(UserLookupError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        check_name("robot-1.test_user$").unwrap();
    }

    #[test]
    fn the_files_give_the_user_with_the_groups_that_list_it() {
        let d = tempfile::tempdir().unwrap();
        let (p, g) = (d.path().join("passwd"), d.path().join("group"));
        std::fs::write(
            &p,
            "root:x:0:0:root:/root:/bin/bash\nrobot:x:1001:1002::/home/robot:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &g,
            "root:x:0:\nrobot:x:1002:\naudio:x:29:pulse,robot\nrobots:x:1003:robotic\nweird\n",
        )
        .unwrap();
        let u = in_files(&p, &g, "robot").unwrap();
        assert_eq!((u.uid, u.gid), (1001, 1002));
        assert_eq!(u.home, Path::new("/home/robot"));
        assert_eq!(u.shell, "/bin/sh");
        assert_eq!(u.groups, [1002, 29], "primary first, then those listing it");
        let missing = in_files(&p, &g, "ghost").unwrap_err().to_string();
        assert!(
            missing.contains("\"ghost\"") && missing.contains("passwd"),
            "{missing}"
        );
    }

    #[test]
    fn getent_answers_like_nss_and_a_uid_is_not_a_name() {
        let Some(getent) = GETENT.iter().map(Path::new).find(|p| p.is_file()) else {
            eprintln!("SKIP: no getent on this host");
            return;
        };
        let root = via_getent(getent, "root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(root.groups.first(), Some(&0));
        let err = via_getent(getent, "robotmk-no-such-user-x").unwrap_err();
        assert!(
            matches!(err, UserLookupError::NotFound { .. }),
            "{err}: {err:?}"
        );
        // `getent passwd 0` finds root by uid: a name that is a number is not taken for it.
        assert!(matches!(
            via_getent(getent, "0"),
            Err(UserLookupError::NotFound { .. })
        ));
        #[cfg(not(target_feature = "crt-static"))]
        {
            let nss = nss::lookup("root").unwrap();
            assert_eq!((nss.uid, nss.gid, &nss.home), (0, 0, &root.home));
            assert_eq!(nss.shell, root.shell);
            // root's account never expires; a user with no shadow entry is not expired.
            let shadow = Path::new(SHADOW);
            assert_eq!(
                expired_on(ageing_in(shadow, "root").unwrap(), today()),
                None
            );
            assert_eq!(
                ageing_in(shadow, "robotmk-no-such-user-x").unwrap(),
                Ageing::default()
            );
        }
    }
}
