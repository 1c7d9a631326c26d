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
    // Bytes, line by line: glibc, PAM and `chage` take shadow as bytes, and one line that is
    // not UTF-8 (a Latin-1 name, a tool's odd hash) made every user's lookup fail, which
    // refused the whole config. Only the user's own line is parsed.
    let mut found = None;
    let scanned = scan_lines(shadow, |line| match parse_shadow_line(line) {
        Some((n, a)) if n == name.as_bytes() => {
            found = Some(a);
            true
        }
        _ => false,
    });
    match scanned {
        Ok(()) => Ok(found.unwrap_or_default()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(Ageing::default())
        }
        Err(e) => Err(UserLookupError::Failed {
            name: name.to_string(),
            looked: shadow.display().to_string(),
            source: io::Error::new(e.kind(), format!("{}: {e}", shadow.display())),
        }),
    }
}

/// `name:password:lastchg:min:max:warn:inactive:expire:flag` as (name, its dates), as bytes
/// (the file's own form); a field is `None` when empty or not a number. `None` for a
/// comment, a NIS line or a malformed one.
fn parse_shadow_line(line: &[u8]) -> Option<(&[u8], Ageing)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() < 8 || f[0].is_empty() || matches!(f[0][0], b'#' | b'+' | b'-') {
        return None;
    }
    let day = |i: usize| number(f[i]);
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

/// A number field of a database line (blanks around it allowed); `None` when it is none.
fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
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
            shell: u.shell.into_os_string(),
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
/// The most of `getent`'s output read (one entry: far less).
const READ_CAP: u64 = 16 * 1024 * 1024;
/// The most of `/etc/shadow`, `/etc/passwd` or `/etc/group` scanned for a user: only a
/// file that is no user database (a link to a device) reaches it, and reaching it is an
/// error, never a cut that misses the user's line (an expired account taken for a valid one).
const SCAN_CAP: u64 = 256 * 1024 * 1024;

/// Hands each line of the file at `path` to `line` (as bytes, without its newline) until it
/// returns true. Bytes: these files are the OS's, not text (a Latin-1 name in one line must
/// not hide the others), and glibc reads them so. Streamed: only one line is held at a time.
fn scan_lines(path: &Path, mut line: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
    use io::BufRead;
    let mut r = io::BufReader::new(std::fs::File::open(path)?.take(SCAN_CAP + 1));
    let (mut buf, mut total) = (Vec::new(), 0u64);
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        total += n as u64;
        if total > SCAN_CAP {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "longer than {} MiB, more than any user database; not read",
                    SCAN_CAP >> 20
                ),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        if line(buf.strip_suffix(b"\n").unwrap_or(&buf)) {
            return Ok(());
        }
    }
}

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
        .split(|&b| b == b'\n')
        .filter_map(parse_passwd_line)
        .find(|e| e.name == name.as_bytes());
    let Some(e) = entry else {
        return Err(UserLookupError::NotFound {
            name: name.to_string(),
            looked,
        });
    };
    // `NAME gid gid…`: the supplementary groups, without the primary one.
    let out = run_bounded(getent, &["initgroups", name]).map_err(failed)?;
    let mut groups = vec![e.gid];
    for line in out.split(|&b| b == b'\n') {
        let mut f = line
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty());
        if f.next() != Some(name.as_bytes()) {
            continue;
        }
        for g in f {
            let gid = number(g).ok_or_else(|| {
                failed(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "`getent initgroups {name}` printed {:?} for a group id",
                        String::from_utf8_lossy(g)
                    ),
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
    let failed = |p: &Path, e: io::Error| UserLookupError::Failed {
        name: name.to_string(),
        looked: looked.clone(),
        source: io::Error::new(e.kind(), format!("{}: {e}", p.display())),
    };
    let mut entry = None;
    scan_lines(passwd, |line| {
        entry = parse_passwd_line(line).filter(|e| e.name == name.as_bytes());
        entry.is_some()
    })
    .map_err(|e| failed(passwd, e))?;
    let Some(e) = entry else {
        return Err(UserLookupError::NotFound {
            name: name.to_string(),
            looked,
        });
    };
    let mut groups = vec![e.gid];
    scan_lines(group, |line| {
        // name:password:gid:member,member
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let (Some(gid), Some(members)) = (f.get(2).and_then(|g| number(g)), f.get(3)) else {
            return false;
        };
        let listed = members
            .split(|&b| b == b',')
            .any(|m| m.trim_ascii() == name.as_bytes());
        if listed && !groups.contains(&gid) {
            groups.push(gid);
        }
        false
    })
    .map_err(|e| failed(group, e))?;
    Ok(e.user(name, groups))
}

/// One line of `/etc/passwd` (or of `getent passwd`), as the OS's bytes: a home or shell
/// whose path is not UTF-8 is still the path the user has.
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry {
    name: Vec<u8>,
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: std::ffi::OsString,
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
fn parse_passwd_line(line: &[u8]) -> Option<PasswdEntry> {
    use std::os::unix::ffi::OsStrExt;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() != 7 || f[0].is_empty() || matches!(f[0][0], b'#' | b'+' | b'-') {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_vec(),
        uid: number(f[2])?,
        gid: number(f[3])?,
        home: PathBuf::from(std::ffi::OsStr::from_bytes(f[5])),
        shell: std::ffi::OsStr::from_bytes(f[6]).to_os_string(),
    })
}

/// Runs `program args…` with an empty environment and returns its stdout (bytes: the
/// database's own), at most [`READ_CAP`] bytes (more is an error), ending it after
/// [`GETENT_TIMEOUT`].
fn run_bounded(program: &Path, args: &[&str]) -> io::Result<Vec<u8>> {
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
            let r = stdout.take(READ_CAP + 1).read_to_end(&mut out).map(|_| out);
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
    if out.len() as u64 > READ_CAP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it printed more than {} MiB for one entry", READ_CAP >> 20),
        ));
    }
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passwd_line_is_read_and_odd_ones_are_skipped() {
        assert_eq!(
            parse_passwd_line(b"robot:x:1001:1002:Robot,,,:/home/robot:/bin/bash"),
            Some(PasswdEntry {
                name: b"robot".to_vec(),
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
            assert_eq!(parse_passwd_line(odd.as_bytes()), None, "{odd:?}");
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

    /// Shadow is bytes: a line that is not UTF-8 (a Latin-1 name, a tool's odd hash) before
    /// or after the user's own does not fail the lookup, and a name is matched byte for byte.
    #[test]
    fn a_shadow_line_that_is_not_utf8_does_not_hide_the_users_own() {
        let d = tempfile::tempdir().unwrap();
        let shadow = d.path().join("shadow");
        std::fs::write(
            &shadow,
            b"m\xfcller:!:19000:0:99999:7:::\n\
              gone:x:19000:0:99999:7::1:\n\
              hash:$6$\xff\xfe:19000:0:99999:7::2:\n\
              caf\xe9:x:19000:0:99999:7::3:\n",
        )
        .unwrap();
        assert_eq!(ageing_in(&shadow, "gone").unwrap().expire, Some(1));
        assert_eq!(ageing_in(&shadow, "hash").unwrap().expire, Some(2));
        assert_eq!(ageing_in(&shadow, "robot").unwrap(), Ageing::default());
        // "café" in UTF-8 is not the Latin-1 line's name.
        assert_eq!(ageing_in(&shadow, "caf\u{e9}").unwrap(), Ageing::default());
        assert_eq!(
            parse_shadow_line(b"caf\xe9:x:1:0:2:7:3:4:").map(|(n, a)| (n.to_vec(), a)),
            Some((
                b"caf\xe9".to_vec(),
                Ageing {
                    lastchg: Some(1),
                    max: Some(2),
                    inact: Some(3),
                    expire: Some(4)
                }
            ))
        );
    }

    /// The user's line after more than the old 16 MiB read cap is still found (the cap cut
    /// the file: an expired account late in a large file read as not expired).
    #[test]
    fn the_users_line_late_in_a_large_shadow_is_found() {
        let d = tempfile::tempdir().unwrap();
        let shadow = d.path().join("shadow");
        let filler = "filler-user-with-a-long-name:x:19000:0:99999:7:::\n";
        let mut text = filler.repeat((17 << 20) / filler.len() + 1);
        text.push_str("late:x:19000:0:99999:7::5:\n");
        std::fs::write(&shadow, text).unwrap();
        assert_eq!(ageing_in(&shadow, "late").unwrap().expire, Some(5));
    }

    /// passwd and group are bytes too (the static build reads them where the host has no
    /// getent): a home whose path is not UTF-8 is kept byte for byte, and odd lines of other
    /// accounts and groups do not fail the lookup.
    #[test]
    fn passwd_and_group_lines_that_are_not_utf8_are_read_as_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let e = parse_passwd_line(b"robot:x:1001:1002:R\xf6bot:/home/caf\xe9:/bin/sh\xe9").unwrap();
        assert_eq!(e.name, b"robot");
        assert_eq!(e.home.as_os_str().as_bytes(), b"/home/caf\xe9");
        assert_eq!(e.shell.as_bytes(), b"/bin/sh\xe9");
        let d = tempfile::tempdir().unwrap();
        let (p, g) = (d.path().join("passwd"), d.path().join("group"));
        std::fs::write(
            &p,
            b"m\xfcller:x:1000:1000::/home/m\xfcller:/bin/sh\n\
              robot:x:1001:1002::/home/caf\xe9:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &g,
            b"gr\xfcn:x:50:robot\nrobot:x:1002:\naudio:x:29:m\xfcller,robot\n",
        )
        .unwrap();
        let u = in_files(&p, &g, "robot").unwrap();
        assert_eq!(u.home.as_os_str().as_bytes(), b"/home/caf\xe9");
        assert_eq!(u.groups, [1002, 50, 29]);
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
