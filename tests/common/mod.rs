//! Test harness: one instance per test (own temp dir, config and state dir), the real binary,
//! polling with deadlines instead of sleeps, and a guard that ends every process the test
//! started — by PID — also when the test panics.
#![allow(dead_code)]

pub mod checkmk;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_robotmk-daemon");

static SUBREAPER: Once = Once::new();

/// Detached daemons are re-parented to us instead of to PID 1 (which may not reap in a
/// container), so the guard can reap what it killed and no zombie is left behind.
fn become_subreaper() {
    SUBREAPER.call_once(|| {
        // SAFETY: prctl with one integer argument.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_for_every(timeout, Duration::from_millis(10), cond)
}

/// Polls `cond` every `every` until it holds or `timeout` passes (a slower poll where each
/// look is expensive, as under Wine); returns whether it held.
pub fn wait_for_every(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie has ended; it only waits to be reaped. But the main thread of a killed process
    // shows as a zombie while its other threads are still exiting, and the process's files
    // (its locks) are released only when the last one is gone: the daemon's inotify
    // descriptor takes milliseconds to tear down. So: alive while any thread is not a zombie.
    let zombie = |stat: &str| {
        stat.rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(true)
    };
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks
            .flatten()
            .any(|t| std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| !zombie(&s))),
        Err(_) => false,
    }
}

fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid on a specific pid with WNOHANG; fails harmlessly if not our child.
    unsafe {
        libc::waitpid(pid as i32, &mut status, libc::WNOHANG);
    }
}

/// Ends the process `.0` (one this test started) by SIGKILL when dropped, also on a panic.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(self.0);
    }
}

pub fn kill9(pid: u32) {
    // SAFETY: kill on a PID this test started (found via its unique config path).
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_for(Duration::from_secs(5), || {
        reap(pid);
        !pid_alive(pid)
    });
}

/// Live processes whose command line contains `needle` (our unique temp paths).
/// The parent PID of `pid`, from /proc (the field after the command's closing parenthesis).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub fn processes_with(needle: &str) -> Vec<(u32, String)> {
    live_processes(needle, false)
}

/// Live processes whose command line or environment contains `needle`: runners inherit
/// ROBOTMK_RUN_DIR, which lies in the test's temp dir, and pass it on to their children.
pub fn processes_of(needle: &str) -> Vec<(u32, String)> {
    live_processes(needle, true)
}

fn live_processes(needle: &str, with_env: bool) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || !pid_alive(pid) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|r| String::from_utf8_lossy(&r).replace('\0', " "))
            .unwrap_or_default();
        let env = if !with_env {
            String::new()
        } else {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|r| String::from_utf8_lossy(&r).into_owned())
                .unwrap_or_default()
        };
        if cmd.contains(needle) || env.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// One instance: a temp dir with `config.toml` and `state/`.
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Instance {
    /// A new instance whose config is `[daemon]` settings `daemon` plus `jobs` (TOML text).
    pub fn new(daemon: &str, jobs: &str) -> Instance {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("rmkd-test-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("config.toml");
        let state = dir.path().join("state");
        let inst = Instance { dir, config, state };
        inst.write_config(daemon, jobs);
        inst
    }

    pub fn write_config(&self, daemon: &str, jobs: &str) {
        let text = format!(
            "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nstop_grace = \"1s\"\n{daemon}\n\n{jobs}\n",
            self.state.display()
        );
        self.write_raw_config(&text);
    }

    pub fn write_raw_config(&self, text: &str) {
        // Replace atomically so a daemon never reads half a file.
        let tmp = self.dir.path().join(".config.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config);
        c.env_remove("MK_CONFDIR")
            .env_remove("MK_VARDIR")
            .env_remove("ROBOTMK_DAEMON_CONFIG");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run robotmk-daemon")
    }

    pub fn ctrl(&self) -> Output {
        self.run(&["ctrl"])
    }

    /// ctrl's JSON section, parsed.
    pub fn ctrl_json(&self) -> Value {
        let out = self.ctrl();
        assert!(out.status.success(), "ctrl failed: {out:?}");
        parse_section(&String::from_utf8_lossy(&out.stdout))
    }

    pub fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("status --json output")
    }

    /// The daemon's PID as recorded by it, if a daemon runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        let s = self.status_json();
        if s["daemon"]["running"].as_bool() != Some(true) {
            return None;
        }
        s["daemon"]["pid"].as_u64().map(|p| p as u32)
    }

    /// Live daemon processes of this instance (found by its unique config path).
    /// A child the daemon is starting shows the daemon's command line until it execs (a
    /// `CLONE_VM` child shares its memory, a forked one copies it): such a child of a daemon
    /// is not a second daemon.
    pub fn daemon_processes(&self) -> Vec<u32> {
        let needle = format!("{} daemon", self.config.display());
        let all: Vec<u32> = processes_with(&needle).into_iter().map(|p| p.0).collect();
        all.iter()
            .copied()
            .filter(|p| parent_of(*p).is_none_or(|pp| !all.contains(&pp)))
            .collect()
    }

    pub fn wait_daemon_gone(&self, timeout: Duration) -> bool {
        wait_for(timeout, || {
            for p in self.daemon_processes() {
                reap(p);
            }
            self.daemon_processes().is_empty()
        })
    }

    /// Every run record of `job`, parsed, oldest first.
    pub fn records(&self, job: &str) -> Vec<Value> {
        let runs = self.state.join("jobs").join(job).join("runs");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.iter()
            .filter_map(|d| std::fs::read(d.join("record.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    pub fn finished_records(&self, job: &str) -> Vec<Value> {
        self.records(job)
            .into_iter()
            .filter(|r| !r["outcome"].is_null())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Instance {
    /// Ends the daemon and every process whose command line names this instance's temp dir
    /// (runners get it through {run_dir} or the config path), by PID.
    fn drop(&mut self) {
        end_processes_of(self.dir.path());
    }
}

/// Ends, by PID, the daemon and every process whose command line or environment names `dir`
/// (an instance's temp dir: runners get it through {run_dir} or the config path).
pub fn end_processes_of(dir: &Path) {
    let needle = dir.display().to_string();
    for (pid, _) in processes_of(&needle) {
        // Process groups first: runners' grandchildren.
        // SAFETY: signalling processes this test started.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
        kill9(pid);
    }
}

/// Extracts and parses the JSON line of the robotmk_daemon section (after checking the whole
/// output against Checkmk's grammar, see [`checkmk`]).
pub fn parse_section(out: &str) -> Value {
    checkmk::parse_ok(out);
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l == "<<<robotmk_daemon:sep(0)>>>" {
            let json = lines.next().expect("JSON line after the header");
            return serde_json::from_str(json).unwrap_or_else(|e| panic!("bad JSON {json}: {e}"));
        }
    }
    panic!("no robotmk_daemon section in:\n{out}");
}

/// The local-check lines of ctrl's output for the agent's own host (the whole output checked
/// against Checkmk's grammar first, see [`checkmk`]).
pub fn local_lines(out: &str) -> Vec<String> {
    checkmk::parse_ok(out);
    out.lines()
        .skip_while(|l| *l != "<<<local:sep(0)>>>")
        .skip(1)
        .take_while(|l| !l.starts_with("<<<"))
        .map(str::to_string)
        .collect()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Robot Framework from `$ROBOTMK_TEST_ROBOT` or the project's `.venv` (scripts/test.sh), if
/// it is there (callers skip, or fail in CI, through [`require_tool`]).
pub fn test_robot() -> Option<PathBuf> {
    let p = std::env::var_os("ROBOTMK_TEST_ROBOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/robot")));
    p.is_file().then_some(p)
}

/// Whether the shell finds `tool` on this machine's PATH (a test then needs it, or skips).
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// CI installs every tool; a developer's machine may lack one: skip there, fail in CI.
pub fn require_tool(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required in CI but missing");
    }
    eprintln!("SKIP: {what} is missing on this machine");
    false
}

/// libfaketime, for tests that move the wall clock of the processes they start (the
/// machine's is not the test's to set); `None` (the test skips, or fails under CI) where it is
/// not installed.
pub fn faketime() -> Option<&'static Path> {
    let lib = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    require_tool(lib.is_file(), "libfaketime (apt-get install faketime)").then_some(lib)
}

/// Root is needed (users, state dirs other users cannot read): skip with `why` on a developer's
/// machine, fail in CI (which runs as root).
#[cfg(unix)]
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "needs root under CI"
    );
    eprintln!("SKIP: {why}");
    false
}

/// A command's output as text, for messages and asserts.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True while a live (non-zombie) process is in process group `pgid`.
pub fn group_has_live_members(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
    })
}

/// Runs a user-database command (`useradd`, `userdel`, ...) as a test would, again while it
/// fails only because a parallel test holds the database's lock ("cannot lock /etc/passwd; try
/// again later"), for up to 30 s.
pub fn user_db(program: &str, args: &[&str]) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let locked = String::from_utf8_lossy(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A system user (uid, gid), created once (and kept, like tests/security.rs's attacker).
/// `None` (a skip; a failure in CI) where this process is not root.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    type Users = std::collections::BTreeMap<String, Option<(u32, u32)>>;
    static U: std::sync::Mutex<Users> = std::sync::Mutex::new(Users::new());
    let mut users = U.lock().unwrap_or_else(|e| e.into_inner());
    if !users.contains_key(name) {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() == 0 };
        if root && id("-u").is_none() {
            let out = user_db(
                "useradd",
                &[
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
            );
            // Another test binary may have created it in between.
            assert!(
                out.status.success() || id("-u").is_some(),
                "useradd {name}: {out:?}"
            );
        }
        users.insert(
            name.to_string(),
            if root { id("-u").zip(id("-g")) } else { None },
        );
    }
    let got = users[name];
    if got.is_none() {
        require_tool(false, &format!("root (to create the user {name})"));
    }
    got
}

/// A Python script that writes a minimal pure-Python wheel `NAME-VERSION` into OUTDIR
/// (`python3 -c MKWHEEL NAME VERSION OUTDIR`), renamed into place whole: a local package
/// index without the network.
pub const MKWHEEL: &str = r#"
import sys, zipfile, hashlib, base64, os
name, version, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{name}.py": f"VERSION = {version!r}\n",
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: robotmk-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = f"{name}-{version}.dist-info/RECORD"
lines = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    lines.append(f"{path},sha256={digest},{len(text.encode())}")
lines.append(f"{record},,")
files[record] = "\n".join(lines) + "\n"
os.makedirs(outdir, exist_ok=True)
tmp = os.path.join(outdir, f".{name}-{version}.tmp")
with zipfile.ZipFile(tmp, "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
os.replace(tmp, os.path.join(outdir, f"{name}-{version}-py3-none-any.whl"))
"#;

/// Runs `cmd`, killing it (and failing the test) if it takes longer than `limit`: a hang is
/// a monitoring blackout, and the agent would kill ctrl the same way. Returns the output
/// and how long it took.
pub fn output_within(limit: Duration, cmd: &mut Command) -> (Output, Duration) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let out = std::thread::spawn(move || {
        let o = child.wait_with_output();
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        o
    });
    if !wait_for(limit, || done.load(std::sync::atomic::Ordering::SeqCst)) {
        kill9(pid);
        panic!("{cmd:?} hung for {:?}", t.elapsed());
    }
    let took = t.elapsed();
    (out.join().unwrap().unwrap(), took)
}

/// A small tmpfs mounted for one test (a file system to fill up), unmounted when dropped,
/// also when the test panics, after ending what still runs from it (runners there need not
/// name the instance's temp dir). Declare it before the instance, so it drops after the
/// instance has ended its daemon.
#[cfg(unix)]
pub struct Tmpfs(pub PathBuf);

#[cfg(unix)]
impl Tmpfs {
    /// Mounts a tmpfs with `opts` (`size=4m,nr_inodes=1000`) on the new folder `dir`; needs
    /// root (the caller checks with [`require_root`]).
    pub fn mount(dir: &Path, opts: &str) -> Tmpfs {
        std::fs::create_dir(dir).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("{opts},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mount -t tmpfs on {} failed", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Takes every inode, then every byte: no file can be created or grown. Returns how many
    /// files that took.
    pub fn fill(&self) -> usize {
        let mut files = 0;
        while std::fs::File::create(self.0.join(format!("filler{files}"))).is_ok() {
            files += 1;
        }
        if let Ok(mut f) = std::fs::File::create(self.0.join("filler0")) {
            let chunk = vec![0u8; 64 * 1024];
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        }
        files
    }

    /// Gives the space back.
    pub fn empty(&self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("filler") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(unix)]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        end_processes_of(&self.0);
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
