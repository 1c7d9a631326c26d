//! What a run leaves in its folders (issue 19, findings 3 and 7), as tests with real users,
//! real trees and a real daemon.
//!
//! - F3 a tree a runner built in its run folder — 81,000 levels deep, wide, full of links to
//!   root's files and folders, with folders it locked (mode 0000, 0500), a mount point — is
//!   removed when the run is pruned, without crashing the daemon, without blocking it, and
//!   without touching anything outside the tree; for a `user` job and for a root job;
//! - F7 each run has its own `TMPDIR` (`TEMP`, `TMP`) inside its run folder, the user's for a
//!   `user` job (0700), and it is gone when the run has ended; a job's own `env` names wins.
//! - Pruning keeps `keep_runs` finished runs: the folder prepared for a job's next run does not
//!   push its last finished run out.
//!
//! The user is created by the test (`rmkd-folders`; as root, kept for later runs; elsewhere the
//! tests skip with a reason, and fail when `CI=true`).
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const USER: &str = "rmkd-folders";

/// The unprivileged user of these tests, created once (and kept, like the other test files'
/// users). `None` (a skip; a failure in CI) where this process is not root.
fn user() -> Option<(u32, u32)> {
    static U: Mutex<Option<Option<(u32, u32)>>> = Mutex::new(None);
    let mut u = U.lock().unwrap_or_else(|e| e.into_inner());
    if u.is_none() {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, USER]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root && id("-u").is_none() {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent"])
                .args(["--shell", "/usr/sbin/nologin", USER])
                .output()
                .expect("useradd");
            assert!(
                out.status.success() || id("-u").is_some(),
                "useradd: {out:?}"
            );
        }
        *u = Some(if root { id("-u").zip(id("-g")) } else { None });
    }
    let got = *u.as_ref().unwrap();
    if got.is_none() {
        require_tool(false, "root (to create the user a job runs as)");
    }
    got
}

fn python() -> bool {
    require_tool(Path::new("/usr/bin/python3").is_file(), "/usr/bin/python3")
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn start(inst: &Instance) -> u32 {
    let out = inst.run(&["start"]);
    assert!(out.status.success(), "start: {out:?}");
    let mut pid = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            pid = inst.daemon_pid();
            pid.is_some()
        }),
        "no daemon: {}",
        inst.log()
    );
    pid.unwrap()
}

/// Removes what the test made that the temp dir's own removal (recursive) cannot: deep
/// trees, and a mount (unmounted first, so nothing is removed through it). Runs before the
/// instance's guard, also on panic.
struct Cleanup {
    /// The instance's temp dir: its daemon and runs are ended first, so that no removal of
    /// theirs races the test's (a half-removed deep tree left for the temp dir's own,
    /// recursive removal overflowed the test's stack).
    instance: PathBuf,
    /// Every mount below this folder is unmounted (wherever pruning moved it).
    mounts_under: Option<PathBuf>,
    trees: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        end_processes_of(&self.instance);
        if let Some(dir) = &self.mounts_under {
            for m in mounts_under(dir).iter().rev() {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
        for t in &self.trees {
            // GNU rm walks any depth and stays on one file system.
            let _ = Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(t)
                .status();
        }
    }
}

/// The mount points below `dir` (from /proc/self/mountinfo; the test's paths have no
/// characters that file escapes).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect()
}

/// Root's files outside the run folder, which links in the tree point at.
struct Bait {
    dir: PathBuf,
}

impl Bait {
    fn new(under: &Path) -> Bait {
        let dir = under.join("bait");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("file"), "root's file").unwrap();
        fs::write(dir.join("sub/file"), "root's other file").unwrap();
        chmod(&dir, 0o755);
        chmod(&dir.join("sub"), 0o755);
        Bait { dir }
    }

    fn assert_intact(&self) {
        assert_eq!(
            fs::read_to_string(self.dir.join("file")).ok().as_deref(),
            Some("root's file"),
            "root's file outside the tree was touched"
        );
        assert_eq!(
            fs::read_to_string(self.dir.join("sub/file"))
                .ok()
                .as_deref(),
            Some("root's other file"),
            "root's folder outside the tree was touched"
        );
        let m = fs::metadata(&self.dir).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755), "bait changed");
    }
}

/// Builds, in the folder given as the first argument: an 81,000-level chain with links at
/// its bottom; a wide folder; links to the bait (a folder, a file, `/`); a folder locked
/// with mode 0000 and one with 0500 (a user's ways to stall a removal that runs with its
/// rights).
const BUILDER: &str = r#"
import os, sys
top, bait, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.chdir(top)
os.mkdir("deep"); os.chdir("deep")
for i in range(depth):
    os.mkdir("d"); os.chdir("d")
open("bottom", "w").write("x")
os.symlink(bait, "bait-dir"); os.symlink(os.path.join(bait, "file"), "bait-file")
os.chdir(top)
os.mkdir("wide")
for i in range(20000):
    open("wide/f%d" % i, "w").close()
for d in range(300):
    os.mkdir("wide/d%d" % d)
    for i in range(20):
        open("wide/d%d/f%d" % (d, i), "w").close()
os.mkdir("links")
os.symlink(bait, "links/dir"); os.symlink(os.path.join(bait, "file"), "links/file")
os.symlink("/", "links/root"); os.symlink("..", "links/up")
os.mkdir("locked"); os.mkdir("locked/inner"); open("locked/inner/f", "w").close()
os.chmod("locked/inner", 0); os.chmod("locked", 0)
os.mkdir("readonly"); open("readonly/f", "w").close(); os.chmod("readonly", 0o500)
"#;

/// A job whose first run builds the trees in its `{run_dir}` (and says where in
/// `<ctl>/built`); every run writes `done`.
fn tree_job(name: &str, ctl: &Path, builder: &Path, bait: &Path, user: Option<&str>) -> String {
    let script = format!(
        "if mkdir {ctl}/first 2>/dev/null; then python3 {b} \"$1\" {bait} 81000 || exit 1; \
         echo \"$1\" > {ctl}/built; fi; echo ok > \"$1/done\"",
        ctl = ctl.display(),
        b = builder.display(),
        bait = bait.display(),
    );
    let user = user
        .map(|u| format!("user = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        "[[job]]\nname = \"{name}\"\ncommand = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{run_dir}}\"]\n\
         every = \"2s\"\ntimeout = \"5m\"\n{user}"
    )
}

/// The run folder a runner wrote to `built` (`echo "$1" > built`), once it is all there: the
/// file exists as soon as the shell's redirection created it, before `echo` wrote a byte, and
/// an empty path read then would name the test's own working folder.
fn built_path(inst: &Instance, built: &Path, timeout: Duration) -> PathBuf {
    let mut text = String::new();
    assert!(
        wait_for(timeout, || {
            text = fs::read_to_string(built).unwrap_or_default();
            text.len() > 1 && text.ends_with('\n')
        }),
        "the runner did not write its folder to {} ({text:?}):\n{}",
        built.display(),
        inst.log()
    );
    let tree = PathBuf::from(text.trim_end_matches('\n'));
    assert!(tree.is_absolute(), "{}", tree.display());
    tree
}

/// The daemon line of ctrl's output, and its state.
fn daemon_state(inst: &Instance) -> (u64, String) {
    let out = String::from_utf8_lossy(&inst.ctrl().stdout).into_owned();
    let line = local_lines(&out)
        .into_iter()
        .find(|l| l.contains(" daemon\""))
        .unwrap_or_else(|| panic!("no daemon line in {out}"));
    (line[..1].parse().unwrap_or(9), line)
}

/// Waits for the first run's tree, then for its removal, with the daemon alive throughout
/// (the same PID: a crash and a restart by ctrl would be another), and runs going on.
fn pruned_without_crash(inst: &Instance, ctl: &Path, pid: u32, job: &str) -> PathBuf {
    let built = ctl.join("built");
    let tree = built_path(inst, &built, Duration::from_secs(300));
    // `built` is written once the tree is complete; with runs every 2 s and keep_runs = 1,
    // pruning may already have moved the folder away by the time the test looks.
    assert!(
        tree.join("deep/d/d/d").is_dir() || !tree.exists(),
        "{}",
        tree.display()
    );
    // A pruned run folder is moved into the job's `removing` folder first: gone means gone
    // from there too.
    let removing = inst.state.join("jobs").join(job).join("removing");
    let gone = wait_for(Duration::from_secs(300), || {
        assert!(
            pid_alive(pid),
            "the daemon died while pruning the tree:\n{}",
            inst.log()
        );
        fs::symlink_metadata(&tree).is_err()
            && fs::read_dir(&removing).map_or(true, |mut d| d.next().is_none())
    });
    assert!(
        gone,
        "the tree {} is still there:\n{}",
        tree.display(),
        inst.log()
    );
    assert_eq!(inst.daemon_pid(), Some(pid), "{}", inst.log());
    // It keeps reporting: a run finishes after the removal, and the daemon line is OK.
    let after = chrono::Utc::now();
    assert!(
        wait_for(Duration::from_secs(60), || {
            inst.finished_records(job).iter().any(|r| {
                r["outcome"] == "success"
                    && r["finished"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t > after)
            })
        }),
        "no run finished after the removal:\n{}",
        inst.log()
    );
    let (state, line) = daemon_state(inst);
    assert_eq!(state, 0, "{line}\n{}", inst.log());
    assert_eq!(inst.daemon_pid(), Some(pid), "{}", inst.log());
    tree
}

#[test]
fn f3_a_users_deep_wide_linked_and_locked_trees_are_pruned_without_a_crash() {
    let Some((uid, gid)) = user() else { return };
    if !python() {
        return;
    }
    let inst = Instance::new("keep_runs = 1", "");
    chmod(inst.dir.path(), 0o755);
    let bait = Bait::new(inst.dir.path());
    let ctl = inst.dir.path().join("ctl");
    fs::create_dir(&ctl).unwrap();
    chown(&ctl, Some(uid), Some(gid)).unwrap();
    let builder = inst.dir.path().join("build.py");
    fs::write(&builder, BUILDER).unwrap();
    chmod(&builder, 0o644);
    let _cleanup = Cleanup {
        instance: inst.dir.path().to_path_buf(),
        mounts_under: None,
        trees: vec![users_tree(&inst), inst.state.clone()],
    };
    inst.write_config(
        "keep_runs = 1",
        &tree_job("deep", &ctl, &builder, &bait.dir, Some(USER)),
    );
    let pid = start(&inst);
    let tree = pruned_without_crash(&inst, &ctl, pid, "deep");
    assert!(
        tree.starts_with(users_tree(&inst)),
        "not in the user's folder: {}",
        tree.display()
    );
    bait.assert_intact();
    assert!(Path::new("/").join("etc/passwd").is_file());
}

#[test]
fn f3_a_root_jobs_deep_tree_is_pruned_without_a_crash() {
    if !python() {
        return;
    }
    let inst = Instance::new("keep_runs = 1", "");
    let bait = Bait::new(inst.dir.path());
    let ctl = inst.dir.path().join("ctl");
    fs::create_dir(&ctl).unwrap();
    let builder = inst.dir.path().join("build.py");
    fs::write(&builder, BUILDER).unwrap();
    let _cleanup = Cleanup {
        instance: inst.dir.path().to_path_buf(),
        mounts_under: None,
        trees: vec![inst.state.clone()],
    };
    inst.write_config(
        "keep_runs = 1",
        &tree_job("deep", &ctl, &builder, &bait.dir, None),
    );
    let pid = start(&inst);
    let tree = pruned_without_crash(&inst, &ctl, pid, "deep");
    assert!(tree.starts_with(&inst.state), "{}", tree.display());
    bait.assert_intact();
}

fn users_tree(inst: &Instance) -> PathBuf {
    PathBuf::from(format!("{}.users", inst.state.display()))
}

/// Whether this host lets root bind-mount (a container may not).
fn can_mount(dir: &Path) -> bool {
    let (a, b) = (dir.join("probe-a"), dir.join("probe-b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let ok = Command::new("mount")
        .arg("--bind")
        .arg(&a)
        .arg(&b)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("umount").arg(&b).status();
    }
    let _ = fs::remove_dir(&a);
    let _ = fs::remove_dir(&b);
    ok
}

#[test]
fn f3_a_mount_point_in_a_users_folder_is_left_alone_and_what_it_shows_untouched() {
    let Some(ids) = user() else { return };
    mount_point_left_alone(Some(ids));
}

#[test]
fn f3_a_mount_point_in_a_root_jobs_folder_is_left_alone_and_what_it_shows_untouched() {
    mount_point_left_alone(None);
}

/// Root's folder bind-mounted into a run folder (by the test: a root runner could, a user
/// cannot) is neither entered nor emptied when the folder is pruned; the rest of the folder
/// goes, and once unmounted, the folder too.
fn mount_point_left_alone(user: Option<(u32, u32)>) {
    let inst = Instance::new("keep_runs = 1", "");
    chmod(inst.dir.path(), 0o755);
    if !can_mount(inst.dir.path()) {
        // Not a missing tool: the host (a container without CAP_SYS_ADMIN) forbids it.
        eprintln!("SKIP: this host does not let root bind-mount");
        return;
    }
    let bait = Bait::new(inst.dir.path());
    let ctl = inst.dir.path().join("ctl");
    fs::create_dir(&ctl).unwrap();
    if let Some((uid, gid)) = user {
        chown(&ctl, Some(uid), Some(gid)).unwrap();
    }
    // The first run makes `mnt`, says so, and waits until the test has mounted root's
    // folder there; later runs end at once.
    let script = format!(
        "if mkdir {ctl}/first 2>/dev/null; then mkdir \"$1/mnt\"; echo x > \"$1/mine\"; \
         echo \"$1\" > {ctl}/built; i=0; while [ ! -e {ctl}/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi",
        ctl = ctl.display()
    );
    inst.write_config(
        "keep_runs = 1",
        &format!(
            "[[job]]\nname = \"m\"\ncommand = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{run_dir}}\"]\n\
             every = \"2s\"\n{}",
            if user.is_some() { format!("user = \"{USER}\"\n") } else { String::new() }
        ),
    );
    let built = ctl.join("built");
    let _cleanup = Cleanup {
        instance: inst.dir.path().to_path_buf(),
        mounts_under: Some(inst.dir.path().to_path_buf()),
        trees: vec![],
    };
    let pid = start(&inst);
    let tree = built_path(&inst, &built, Duration::from_secs(60));
    let mnt = tree.join("mnt");
    let out = Command::new("mount")
        .arg("--bind")
        .arg(&bait.dir)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    fs::write(ctl.join("go"), "").unwrap();
    // Pruned: everything of the folder but the mount point goes (a root job's folder is
    // moved aside first, the mount with it); root's folder shown through it is untouched,
    // and the daemon says why the folder stays.
    let mut now = mnt.clone();
    let only_mnt = |now: &mut PathBuf| {
        let Some(m) = mounts_under(inst.dir.path()).into_iter().next() else {
            return false;
        };
        *now = m;
        let left: Vec<_> = fs::read_dir(now.parent().unwrap())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        left == ["mnt"]
    };
    assert!(
        wait_for(Duration::from_secs(60), || only_mnt(&mut now)),
        "{}: {:?}\n{}",
        now.display(),
        fs::read_dir(now.parent().unwrap())
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
        inst.log()
    );
    assert!(pid_alive(pid));
    bait.assert_intact();
    assert!(now.join("file").is_file(), "the mount was emptied");
    assert!(
        wait_for(Duration::from_secs(60), || inst
            .log()
            .contains("mount point")),
        "the log does not say why the folder stays:\n{}",
        inst.log()
    );
    // Once unmounted, the next look removes the rest.
    let out = Command::new("umount").arg(&now).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let folder = now.parent().unwrap().to_path_buf();
    assert!(
        wait_for(Duration::from_secs(60), || fs::symlink_metadata(&folder)
            .is_err()),
        "{}",
        inst.log()
    );
    bait.assert_intact();
    assert_eq!(inst.daemon_pid(), Some(pid));
}

#[test]
fn f3_a_users_folder_is_removed_with_that_users_rights_only() {
    let Some((uid, gid)) = user() else { return };
    let inst = Instance::new("keep_runs = 1", "");
    chmod(inst.dir.path(), 0o755);
    let ctl = inst.dir.path().join("ctl");
    fs::create_dir(&ctl).unwrap();
    chown(&ctl, Some(uid), Some(gid)).unwrap();
    // The first run leaves files and waits until the test has put root's folder among them
    // (as a root process might: a tool of the admin's, a package hook).
    let script = format!(
        "if mkdir {ctl}/first 2>/dev/null; then mkdir \"$1/a\"; echo x > \"$1/a/f\"; \
         echo \"$1\" > {ctl}/built; i=0; while [ ! -e {ctl}/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi",
        ctl = ctl.display()
    );
    inst.write_config(
        "keep_runs = 1",
        &format!(
            "[[job]]\nname = \"r\"\ncommand = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{run_dir}}\"]\n\
             every = \"2s\"\nuser = \"{USER}\"\n"
        ),
    );
    let built = ctl.join("built");
    let pid = start(&inst);
    let tree = built_path(&inst, &built, Duration::from_secs(60));
    let roots = tree.join("roots");
    fs::create_dir(&roots).unwrap();
    fs::write(roots.join("f"), "root's").unwrap();
    chmod(&roots, 0o755);
    fs::write(ctl.join("go"), "").unwrap();
    // The user's own files go; root's folder, which the user may not empty, stays, and the
    // log says why.
    assert!(
        wait_for(Duration::from_secs(60), || !tree.join("a").exists()),
        "{}",
        inst.log()
    );
    assert_eq!(
        fs::read_to_string(roots.join("f")).ok().as_deref(),
        Some("root's"),
        "root's file in the user's folder was removed with root's rights:\n{}",
        inst.log()
    );
    assert!(
        wait_for(Duration::from_secs(60), || inst
            .log()
            .contains("Permission denied")),
        "{}",
        inst.log()
    );
    assert_eq!(inst.daemon_pid(), Some(pid));
    // The test's own tree (std's remover is for tests only, see clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let _ = fs::remove_dir_all(&roots);
}

// ---- F7: a temp folder per run --------------------------------------------------------

/// A runner that reports its temp variables, where `$TMPDIR` really is (its owner and mode),
/// leaves files there (by `mktemp`, Python's `tempfile`, and by hand), and binds a Unix socket
/// the way Chromium does at every start (`$TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket`:
/// a socket path has at most 107 bytes, and Chromium aborts when it does not fit).
const TMP_SCRIPT: &str =
    "echo \"$TMPDIR|$TEMP|$TMP\" > \"$1/vars\"; readlink -f \"$TMPDIR\" > \"$1/real\"; \
    stat -L -c '%u %a' \"$TMPDIR\" > \"$1/owner\"; \
    f=$(mktemp); d=$(mktemp -d); p=$(python3 -c 'import tempfile; print(tempfile.mkstemp()[1])'); \
    mkdir -p \"$TMPDIR/a/b\"; echo x > \"$TMPDIR/a/b/c\"; echo \"$f $d $p\" > \"$1/made\"; \
    readlink -f \"$f\" > \"$1/made_real\"; \
    python3 -c 'import os, socket, tempfile; d = tempfile.mkdtemp(prefix=\"org.chromium.Chromium.\"); \
    socket.socket(socket.AF_UNIX).bind(os.path.join(d, \"SingletonSocket\")); print(\"ok\")' > \"$1/socket\" 2>&1; true";

fn tmp_job(name: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\ncommand = [\"sh\", \"-c\", {TMP_SCRIPT:?}, \"sh\", \"{{run_dir}}\"]\n\
         every = \"1h\"\n{extra}"
    )
}

/// What a run of [`TMP_SCRIPT`] reported.
struct TmpRun {
    /// The runner's `{run_dir}`.
    dir: PathBuf,
    vars: Vec<String>,
    read: std::collections::HashMap<&'static str, String>,
}

/// Runs `job` once (run-once, which runs it with the daemon's own code) and returns what its
/// runner reported.
fn run_tmp_job(inst: &Instance, job: &str, runner_dir: impl Fn(&Path) -> PathBuf) -> TmpRun {
    let out = inst.run(&["run-once", job]);
    assert!(out.status.success(), "{out:?}\n{}", inst.log());
    let recs = inst.finished_records(job);
    let rec = recs.last().expect("a record");
    assert_eq!(rec["outcome"], "success", "{rec}");
    let dir = runner_dir(Path::new(rec["run_dir"].as_str().unwrap()));
    let mut read = std::collections::HashMap::new();
    for f in ["vars", "real", "owner", "made", "made_real", "socket"] {
        let text = fs::read_to_string(dir.join(f)).unwrap_or_default();
        read.insert(f, text.trim().to_string());
    }
    let vars = read["vars"].split('|').map(str::to_string).collect();
    TmpRun { dir, vars, read }
}

/// The temp variables name one folder, which is the run's `tmp/` (reached by a short name),
/// took what the runner left, fits Chromium's socket, and is gone after the run; nothing of
/// it is left in /tmp.
fn assert_tmp_used_and_gone(run: &TmpRun, owner: &str) {
    let tmp = run.dir.join("tmp");
    let name = run.vars[0].clone();
    assert_eq!(run.vars, vec![name.clone(); 3], "TMPDIR, TEMP, TMP");
    assert_eq!(
        run.read["real"],
        tmp.display().to_string(),
        "where $TMPDIR is"
    );
    assert_eq!(run.read["owner"], owner, "owner and mode of $TMPDIR");
    assert_eq!(
        run.read["socket"], "ok",
        "Chromium's socket under $TMPDIR ({name})"
    );
    let made: Vec<&str> = run.read["made"].split_whitespace().collect();
    assert_eq!(made.len(), 3, "{made:?}");
    for m in &made {
        assert!(m.starts_with(&format!("{name}/")), "{m} is not in {name}");
        let file = Path::new(m).file_name().unwrap();
        assert!(
            !Path::new("/tmp").join(file).exists(),
            "{} was created in /tmp",
            file.to_string_lossy()
        );
    }
    assert!(
        run.read["made_real"].starts_with(&tmp.display().to_string()),
        "{} is not in the run folder",
        run.read["made_real"]
    );
    for gone in [Path::new(&name), tmp.as_path()] {
        assert!(
            fs::symlink_metadata(gone).is_err(),
            "the run's temp folder {} is still there after the run",
            gone.display()
        );
    }
    // The rest of the run folder stays.
    assert!(run.dir.join("made").is_file());
}

/// Links in /tmp that name something below `dir`.
fn links_into(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir("/tmp")
        .map(|d| {
            d.flatten()
                .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn f7_a_run_has_its_own_tmpdir_which_is_gone_when_it_ends() {
    if !python() {
        return;
    }
    let inst = Instance::new("", &tmp_job("t", ""));
    let run = run_tmp_job(&inst, "t", Path::to_path_buf);
    assert_tmp_used_and_gone(&run, "0 700");
    assert_eq!(links_into(inst.dir.path()), Vec::<PathBuf>::new());
}

/// A daemon's runs of one job name their temp folders through one link (a link made and
/// removed per run cost an inode allocated and freed in /tmp each time), each its own folder;
/// the link is gone when the daemon stops.
#[test]
fn f7_a_daemons_runs_of_a_job_share_one_short_link_gone_when_it_stops() {
    let script = "echo \"$TMPDIR\" > \"$1/vars\"; readlink -f \"$TMPDIR\" > \"$1/real\"";
    let inst = Instance::new(
        "",
        &format!(
            "[[job]]\nname = \"t\"\ncommand = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{run_dir}}\"]\nevery = \"1s\"\n"
        ),
    );
    let pid = start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || inst.finished_records("t").len()
            >= 2),
        "{}",
        inst.log()
    );
    let recs = inst.finished_records("t");
    let mut links = std::collections::BTreeSet::new();
    for rec in &recs[..2] {
        let dir = PathBuf::from(rec["run_dir"].as_str().unwrap());
        let tmpdir = fs::read_to_string(dir.join("vars"))
            .unwrap()
            .trim()
            .to_string();
        let run_id = dir.file_name().unwrap().to_str().unwrap();
        assert!(
            tmpdir.len() <= 61,
            "{tmpdir}: too long for Chromium's socket"
        );
        assert!(tmpdir.ends_with(&format!("/{run_id}/tmp")), "{tmpdir}");
        assert_eq!(
            fs::read_to_string(dir.join("real")).unwrap().trim(),
            dir.join("tmp").display().to_string(),
            "where $TMPDIR is"
        );
        links.insert(Path::new(&tmpdir).ancestors().nth(2).unwrap().to_path_buf());
    }
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        links_into(inst.dir.path()),
        links.iter().cloned().collect::<Vec<_>>(),
        "one link in /tmp for the job's runs"
    );
    assert!(inst.run(&["stop"]).status.success());
    assert!(wait_for(Duration::from_secs(20), || !pid_alive(pid)));
    assert_eq!(links_into(inst.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn f7_a_killed_daemons_temp_links_go_when_their_runs_are_gone() {
    // Runs prepared ahead and in flight when the daemon is killed keep their short names;
    // the next daemon removes those whose run folder is gone (here: the whole state dir).
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"s\"\ncommand = [\"sleep\", \"600\"]\nevery = \"1s\"\n",
    );
    let pid = start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !links_into(inst.dir.path())
            .is_empty()
            && inst.status_json()["jobs"][0]["running"][0]["pid"].is_u64()),
        "{}",
        inst.log()
    );
    kill9(pid);
    for (p, _) in processes_of(&inst.dir.path().display().to_string()) {
        kill9(p);
    }
    assert!(!links_into(inst.dir.path()).is_empty());
    // The test's own tree (std's remover is for tests only, see clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let _ = fs::remove_dir_all(&inst.state);
    // Another instance's daemon starts: it sweeps them.
    let other = Instance::new("", "");
    start(&other);
    assert!(
        wait_for(Duration::from_secs(30), || links_into(inst.dir.path())
            .is_empty()),
        "{:?}",
        links_into(inst.dir.path())
    );
}

/// A killed daemon's link for a job the next daemon's config no longer has: the next daemon
/// adopts the run in flight, and once it has ended removes the link with its own at its stop.
/// (The sweep at start keeps it: the job's folder is there. Nothing else would remove it.)
#[test]
fn f7_a_killed_daemons_link_of_a_job_gone_from_the_config_goes_at_the_next_stop() {
    let inst = Instance::new(
        "",
        "[[job]]\nname = \"s\"\ncommand = [\"sleep\", \"4\"]\nevery = \"1s\"\n",
    );
    let pid = start(&inst);
    let mut run_id = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            run_id = inst.status_json()["jobs"][0]["running"][0]["run_id"]
                .as_str()
                .map(str::to_string);
            run_id.is_some() && !links_into(inst.dir.path()).is_empty()
        }),
        "{}",
        inst.log()
    );
    let run_id = run_id.unwrap();
    kill9(pid);
    assert!(wait_for(Duration::from_secs(10), || !pid_alive(pid)));
    let left = links_into(inst.dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    inst.write_config(
        "",
        "[[job]]\nname = \"t\"\ncommand = [\"true\"]\nevery = \"1h\"\n",
    );
    let next = start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || inst
            .finished_records("s")
            .iter()
            .any(|r| r["run_id"] == run_id.as_str())),
        "the adopted run was not recorded: {}",
        inst.log()
    );
    assert_eq!(
        links_into(inst.dir.path()),
        left,
        "kept while the daemon runs"
    );
    assert!(inst.run(&["stop"]).status.success());
    assert!(wait_for(Duration::from_secs(20), || !pid_alive(next)));
    assert_eq!(links_into(inst.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn f7_a_user_jobs_tmpdir_is_the_users_own_and_gone_when_the_run_ends() {
    let Some((uid, _)) = user() else { return };
    if !python() {
        return;
    }
    let inst = Instance::new("", &tmp_job("t", &format!("user = \"{USER}\"\n")));
    chmod(inst.dir.path(), 0o755);
    let users = users_tree(&inst);
    let run = run_tmp_job(&inst, "t", |run_dir| {
        users.join("jobs/t").join(run_dir.file_name().unwrap())
    });
    assert_tmp_used_and_gone(&run, &format!("{uid} 700"));
}

#[test]
fn f7_a_jobs_own_tmpdir_wins_and_the_others_still_name_the_runs() {
    if !python() {
        return;
    }
    let inst = Instance::new("", "");
    let own = inst.dir.path().join("own-tmp");
    fs::create_dir(&own).unwrap();
    inst.write_config(
        "",
        &tmp_job(
            "t",
            &format!("env = {{ TMPDIR = \"{}\" }}\n", own.display()),
        ),
    );
    let run = run_tmp_job(&inst, "t", Path::to_path_buf);
    let ours = run.vars[1].clone();
    assert_eq!(
        run.vars,
        [own.display().to_string(), ours.clone(), ours.clone()]
    );
    assert_ne!(ours, "");
    // The job's folder is the job's: the daemon neither removes it nor what is in it.
    let first = run.read["made"]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(first.starts_with(&*own.display().to_string()), "{first}");
    assert!(Path::new(&first).exists());
    assert!(fs::symlink_metadata(&ours).is_err());
    assert!(fs::symlink_metadata(run.dir.join("tmp")).is_err());
}

/// The real thing: headless Chromium (Debian's `chromium`) as a run's runner, with a state dir
/// as long as a real one: it starts (its socket below `$TMPDIR` fits), and a browser ended by
/// the run's timeout with its profile in `$TMPDIR` (as chromedriver makes it) leaves nothing
/// behind: no `org.chromium.*` in /tmp, no profile. Skips without Debian's chromium (CI
/// installs it, and fails without it).
#[test]
fn f7_chromium_starts_with_the_runs_tmpdir_and_leaves_nothing_in_tmp() {
    let chromium = Path::new("/usr/bin/chromium");
    if !require_tool(chromium.is_file(), "/usr/bin/chromium") {
        return;
    }
    let inst = Instance::new("", "");
    // As long as `/var/lib/check_mk_agent/robotmk-daemon/system` and more.
    let state = inst
        .dir
        .path()
        .join("var/lib/check_mk_agent/robotmk-daemon/system");
    let script = "chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank \
                  > \"$1/dom\" 2> \"$1/chromium.err\"; echo \"$TMPDIR\" > \"$1/tmpdir\"; \
                  d=$(mktemp -d -t .org.chromium.Chromium.XXXXXX); echo \"$d\" > \"$1/profile\"; \
                  chromium --headless --no-sandbox --disable-gpu --user-data-dir=\"$d\" \
                  --remote-debugging-port=0 about:blank 2>> \"$1/chromium.err\" & \
                  while [ ! -e \"$d/Default\" ]; do sleep 0.2; done; sleep 600";
    inst.write_raw_config(&format!(
        "[daemon]\ninstance = \"t\"\nstate_dir = \"{}\"\nstop_grace = \"2s\"\n\n[[job]]\nname = \"browser\"\n\
         command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{run_dir}}\"]\nevery = \"1h\"\ntimeout = \"20s\"\n",
        state.display()
    ));
    let chromium_tmp = || -> std::collections::BTreeSet<std::ffi::OsString> {
        fs::read_dir("/tmp")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n.to_string_lossy().contains("org.chromium."))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = chromium_tmp();
    let out = inst.run(&["run-once", "browser"]);
    let runs = state.join("jobs/browser/runs");
    let run = fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let err = fs::read_to_string(run.join("chromium.err")).unwrap_or_default();
    let rec = fs::read_to_string(run.join("record.json")).unwrap_or_default();
    assert!(
        rec.contains("\"outcome\":\"timeout\""),
        "{out:?}\n{rec}\n{err}"
    );
    let dom = fs::read_to_string(run.join("dom")).unwrap_or_default();
    assert!(dom.contains("<body>"), "{dom}\n{err}");
    assert!(!err.contains("Socket path too long"), "{err}");
    let tmpdir = fs::read_to_string(run.join("tmpdir")).unwrap();
    let profile = fs::read_to_string(run.join("profile")).unwrap();
    assert!(profile.starts_with(tmpdir.trim()), "{profile} {tmpdir}");
    for gone in [tmpdir.trim(), profile.trim()] {
        assert!(fs::symlink_metadata(gone).is_err(), "{gone} is left");
    }
    assert!(!run.join("tmp").exists());
    // Other processes of this host may start Chromium meanwhile: only new entries count.
    let new: Vec<_> = chromium_tmp().difference(&before).cloned().collect();
    assert!(new.is_empty(), "left in /tmp: {new:?}");
}

// ---- keep_runs --------------------------------------------------------------------------

/// `keep_runs = 1` keeps the last finished run, whatever is prepared or running beside it:
/// the folder prepared for the next run (ahead of its due time) used to count, so the run
/// that had just finished was pruned at once and no finished run, with its output, was ever
/// there to look at.
#[test]
fn keep_runs_keeps_the_last_finished_run_beside_the_next_one_prepared() {
    let inst = Instance::new(
        "keep_runs = 1",
        "[[job]]\nname = \"k\"\ncommand = [\"echo\", \"hello\"]\nevery = \"1s\"\n",
    );
    start(&inst);
    assert!(
        wait_for(Duration::from_secs(30), || !inst
            .finished_records("k")
            .is_empty()),
        "{}",
        inst.log()
    );
    // Every look from now on finds a finished run (records are read oldest first, and the
    // older one goes only once the newer one is final), while runs go on and are pruned.
    let mut seen = std::collections::BTreeSet::new();
    let (mut looks, mut outputs) = (0, 0);
    let ok = wait_for_every(Duration::from_secs(30), Duration::from_millis(10), || {
        let done = inst.finished_records("k");
        looks += 1;
        assert!(
            !done.is_empty(),
            "look {looks}: no finished run in {:?}\n{}",
            fs::read_dir(inst.state.join("jobs/k/runs"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default(),
            inst.log()
        );
        let last = done.last().unwrap();
        let dir = PathBuf::from(last["run_dir"].as_str().unwrap());
        // Unless a newer run has just ended and this one gone since the records were read.
        if let Ok(out) = fs::read_to_string(dir.join("stdout.log")) {
            assert_eq!(out, "hello\n", "the last run's output");
            outputs += 1;
        }
        seen.insert(last["run_id"].as_str().unwrap().to_string());
        seen.len() >= 4
    });
    assert!(ok, "runs did not go on: {seen:?}\n{}", inst.log());
    assert!(
        outputs * 2 > looks,
        "{outputs} outputs read in {looks} looks"
    );
    // Pruned all the same: one finished run, besides the one prepared or in flight.
    assert!(
        fs::read_dir(inst.state.join("jobs/k/runs"))
            .unwrap()
            .count()
            <= 3,
        "{}",
        inst.log()
    );
}
