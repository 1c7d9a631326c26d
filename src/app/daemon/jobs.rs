//! What the daemon tracks per configured job: its place in its schedule (the pure
//! [`crate::logic::scheduler`] decides what it means), its runs in flight and queued, its
//! latest result, and the run folder prepared ahead of its next due time.

use crate::logic::scheduler::Slots;
use crate::model::config::Job;
use crate::model::plugin::PluginOutput;
use crate::model::record::{run_id_prefix, Outcome, RunRecord, TestStats};
use crate::model::status::LastRun;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What the daemon tracks per configured job.
///
/// One per job for the daemon's whole life, so kept small (10,000 jobs are 10,000 of these):
/// what most jobs lack most of the time (a prepared run) is boxed, and the latest result is
/// kept as the summary the status shows, compacted ([`Kept`]), not as the whole record.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) job: Arc<Job>,
    /// The next firing and the latest due time taken (see `logic::scheduler`).
    pub(crate) slots: Slots,
    /// Its runs in flight and queued; `None` while it has none (most jobs, most of the
    /// time): boxed, 24 bytes a job less for the daemon's life (issue 25).
    busy: Option<Box<Busy>>,
    /// Latest finished, not skipped run. Inline: in the long run nearly every job has one.
    pub(crate) last: Option<Kept>,
    /// The run folder and journal for the next firing, created ahead of its due time.
    pub(crate) prepared: Option<Box<RunRecord>>,
    /// What few jobs ever have (skipped runs, a failed preparation, a one-shot's answer):
    /// boxed, 48 bytes a job less for the daemon's life (issue 25).
    rare: Option<Box<Rare>>,
}

/// A job's runs in flight and queued (see [`JobState`]).
#[derive(Debug, Default)]
struct Busy {
    /// PIDs of its runs in flight.
    running: Vec<u32>,
    queued: usize,
}

/// What few jobs' states hold (see [`JobState`]).
#[derive(Debug, Default)]
struct Rare {
    /// The final record of the run a one-shot instance (`run-once` without a daemon) was
    /// started for; `run_oneshot` returns it. Never set in a daemon.
    answered: Option<RunRecord>,
    last_skipped: Option<DateTime<Utc>>,
    skipped_total: u64,
    /// A due time whose preparation failed (full disk): not retried before it fires.
    prepare_failed: Option<DateTime<Utc>>,
}

impl JobState {
    pub(crate) fn new(
        job: Arc<Job>,
        last_due: Option<DateTime<Utc>>,
        last: Option<RunRecord>,
    ) -> Self {
        JobState {
            job,
            slots: Slots::new(last_due),
            busy: None,
            last: last.as_ref().map(|r| Kept::from(LastRun::from(r))),
            prepared: None,
            rare: None,
        }
    }

    /// PIDs of its runs in flight.
    pub(crate) fn running(&self) -> &[u32] {
        self.busy.as_ref().map_or(&[], |b| &b.running)
    }

    /// How many of its runs wait for a free slot.
    pub(crate) fn queued(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.queued)
    }

    /// A run of it was spawned.
    pub(crate) fn add_running(&mut self, pid: u32) {
        self.busy.get_or_insert_with(Box::default).running.push(pid);
    }

    /// A run of it has ended.
    pub(crate) fn remove_running(&mut self, pid: u32) {
        if let Some(b) = self.busy.as_mut() {
            b.running.retain(|p| *p != pid);
        }
        self.tidy_busy();
    }

    /// Its runs in flight, as the run table lists them (after a start or a reload).
    pub(crate) fn set_running(&mut self, pids: Vec<u32>) {
        if !pids.is_empty() || self.busy.is_some() {
            self.busy.get_or_insert_with(Box::default).running = pids;
        }
        self.tidy_busy();
    }

    /// One more of its runs waits for a free slot.
    pub(crate) fn add_queued(&mut self) {
        self.busy.get_or_insert_with(Box::default).queued += 1;
    }

    /// One of its queued runs left the queue (started, or dropped at a stop).
    pub(crate) fn remove_queued(&mut self) {
        if let Some(b) = self.busy.as_mut() {
            b.queued = b.queued.saturating_sub(1);
        }
        self.tidy_busy();
    }

    /// An idle job holds no box: its memory goes back as soon as its last run ends.
    fn tidy_busy(&mut self) {
        if self
            .busy
            .as_ref()
            .is_some_and(|b| b.running.is_empty() && b.queued == 0)
        {
            self.busy = None;
        }
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The latest due time skipped, if any was.
    pub(crate) fn last_skipped(&self) -> Option<DateTime<Utc>> {
        self.rare.as_ref().and_then(|r| r.last_skipped)
    }

    /// How many due times were skipped since the daemon started.
    pub(crate) fn skipped_total(&self) -> u64 {
        self.rare.as_ref().map_or(0, |r| r.skipped_total)
    }

    /// Counts a skipped due time.
    pub(crate) fn note_skipped(&mut self, due: DateTime<Utc>) {
        let r = self.rare_mut();
        r.last_skipped = Some(due);
        r.skipped_total += 1;
    }

    /// Remembers the due time whose folder could not be made (`None`: forgets it).
    pub(crate) fn set_prepare_failed(&mut self, due: Option<DateTime<Utc>>) {
        match due {
            Some(_) => self.rare_mut().prepare_failed = due,
            None => {
                if let Some(r) = self.rare.as_mut() {
                    r.prepare_failed = None;
                }
            }
        }
    }

    /// Keeps the final record a one-shot instance answers with.
    pub(crate) fn set_answered(&mut self, rec: RunRecord) {
        self.rare_mut().answered = Some(rec);
    }

    /// Takes the final record a one-shot instance answers with, if any.
    pub(crate) fn take_answered(&mut self) -> Option<RunRecord> {
        self.rare.as_mut().and_then(|r| r.answered.take())
    }

    /// True while the next firing still wants its folder made ahead: none made yet, and
    /// making one did not fail for this due time.
    pub(crate) fn wants_folder(&self) -> bool {
        self.prepared.is_none()
            && self
                .slots
                .next
                .is_some_and(|n| self.rare.as_ref().and_then(|r| r.prepare_failed) != Some(n.due))
    }

    /// True while a run of the job is in flight or queued (what `overlap` looks at).
    pub(crate) fn busy(&self) -> bool {
        self.busy.is_some()
    }
}

/// Every configured job's state, by name: a vector sorted by the job's name, searched by
/// bisection. A map keyed by name held each name a second time and left its nodes partly
/// empty: about 170 bytes a job beyond the states themselves (issue 25). Built whole (from
/// the config's jobs, at start and at each reload), never grown one job at a time.
#[derive(Debug, Default)]
pub(crate) struct JobTable {
    /// Sorted by `job.name`, each name once.
    jobs: Vec<JobState>,
}

impl JobTable {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.jobs.binary_search_by(|js| (*js.job.name).cmp(name))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&JobState> {
        self.find(name).ok().map(|i| &self.jobs[i])
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut JobState> {
        self.find(name).ok().map(|i| &mut self.jobs[i])
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    /// In the order of their names.
    pub(crate) fn values(&self) -> std::slice::Iter<'_, JobState> {
        self.jobs.iter()
    }

    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, JobState> {
        self.jobs.iter_mut()
    }

    /// Each job's name and state, in the order of their names.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &JobState)> {
        self.jobs.iter().map(|js| (&*js.job.name, js))
    }

    /// The states, each by its job's name (a reload takes them apart).
    pub(crate) fn into_map(self) -> BTreeMap<String, JobState> {
        self.jobs
            .into_iter()
            .map(|js| (js.job.name.to_string(), js))
            .collect()
    }
}

/// Built from states in any order; of two states of one name the later one stays (as a map
/// collected from them would keep it). The names given are those of the states' jobs.
impl FromIterator<JobState> for JobTable {
    fn from_iter<I: IntoIterator<Item = JobState>>(iter: I) -> JobTable {
        let mut jobs: Vec<JobState> = iter.into_iter().collect();
        jobs.sort_by(|a, b| a.job.name.cmp(&b.job.name));
        jobs.dedup_by(|later, earlier| {
            let same = later.job.name == earlier.job.name;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        jobs.shrink_to_fit();
        JobTable { jobs }
    }
}

/// A job's latest result as the daemon keeps it: the [`LastRun`] the status shows, in 88
/// bytes instead of 344 plus its strings (10,000 jobs each hold one for the daemon's life,
/// issue 25). What every result has is inline; the run id, when it is the usual
/// `<due>-<n>`, is kept as `n` and written again from the due time; what few results have
/// (test counts, notes, logs, a plugin's reading, a command's first line) is boxed.
/// [`Kept::to_last`] gives back exactly the `LastRun` it was made from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept {
    pub(crate) due: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    duration_s: Option<f64>,
    exit_code: Option<i32>,
    /// `n` of a run id `<due>-<n>` (see [`run_id_prefix`]); unused when `more.run_id` is set.
    seq: u32,
    attempts: Option<u32>,
    outcome: Option<Outcome>,
    output_lost: bool,
    more: Option<Box<More>>,
}

/// What few latest results have (see [`Kept`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct More {
    /// A run id not of the form `<due>-<n>` (a record written by hand or by another build).
    run_id: Option<String>,
    /// The signal that ended the runner (rare: kept boxed).
    signal: Option<i32>,
    tests: Option<TestStats>,
    note: Option<String>,
    log: Option<PathBuf>,
    report: Option<PathBuf>,
    plugin: Option<Box<PluginOutput>>,
    output_head: Option<String>,
    log_url: Option<String>,
}

impl Kept {
    /// The status's summary of the result, as it was kept.
    pub(crate) fn to_last(&self) -> LastRun {
        let more = self.more.as_deref();
        let run_id = match more.and_then(|m| m.run_id.clone()) {
            Some(id) => id,
            None => format!("{}-{}", run_id_prefix(self.due), self.seq),
        };
        LastRun {
            run_id,
            due: self.due,
            started: self.started,
            finished: self.finished,
            duration_s: self.duration_s,
            exit_code: self.exit_code,
            signal: more.and_then(|m| m.signal),
            outcome: self.outcome,
            tests: more.and_then(|m| m.tests.clone()),
            note: more.and_then(|m| m.note.clone()),
            log: more.and_then(|m| m.log.clone()),
            report: more.and_then(|m| m.report.clone()),
            attempts: self.attempts,
            output_lost: self.output_lost,
            plugin: more.and_then(|m| m.plugin.clone()),
            output_head: more.and_then(|m| m.output_head.clone()),
            log_url: more.and_then(|m| m.log_url.clone()),
        }
    }

    pub(crate) fn note(&self) -> Option<&str> {
        self.more.as_deref().and_then(|m| m.note.as_deref())
    }

    /// Whether it is the result of run `run_id`.
    pub(crate) fn is_run(&self, run_id: &str) -> bool {
        match self.more.as_deref().and_then(|m| m.run_id.as_deref()) {
            Some(id) => id == run_id,
            None => seq_of(self.due, run_id) == Some(self.seq),
        }
    }
}

/// `n` when `run_id` is `<due>-<n>` exactly as the daemon writes it (no sign, no leading zero:
/// written again from `n`, it is the same text).
fn seq_of(due: DateTime<Utc>, run_id: &str) -> Option<u32> {
    let (prefix, n) = run_id.rsplit_once('-')?;
    let seq: u32 = n.parse().ok()?;
    (seq.to_string() == n && prefix == run_id_prefix(due)).then_some(seq)
}

impl From<LastRun> for Kept {
    fn from(l: LastRun) -> Kept {
        let seq = seq_of(l.due, &l.run_id);
        let more = More {
            run_id: seq.is_none().then_some(l.run_id),
            signal: l.signal,
            tests: l.tests,
            note: l.note,
            log: l.log,
            report: l.report,
            plugin: l.plugin,
            output_head: l.output_head,
            log_url: l.log_url,
        };
        Kept {
            due: l.due,
            started: l.started,
            finished: l.finished,
            duration_s: l.duration_s,
            exit_code: l.exit_code,
            seq: seq.unwrap_or(0),
            attempts: l.attempts,
            outcome: l.outcome,
            output_lost: l.output_lost,
            more: (more != More::default()).then(|| Box::new(more)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(run_id: &str) -> LastRun {
        let due = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        LastRun {
            run_id: run_id.into(),
            due,
            started: Some(due + chrono::Duration::milliseconds(3)),
            finished: Some(due + chrono::Duration::nanoseconds(1_234_567_891)),
            duration_s: Some(1.23),
            exit_code: Some(0),
            signal: None,
            outcome: Some(Outcome::Success),
            tests: None,
            note: None,
            log: None,
            report: None,
            attempts: None,
            output_lost: false,
            plugin: None,
            output_head: None,
            log_url: None,
        }
    }

    fn state(name: &str, skipped: u64) -> JobState {
        let text = format!(
            "[daemon]\nstate_dir = \"/s\"\n[[job]]\nname = \"{name}\"\ncommand = [\"true\"]\nevery = \"1h\"\n"
        );
        let path = std::path::Path::new("/c.toml");
        let job = crate::service::config::parse(path, &text)
            .unwrap()
            .jobs
            .remove(0);
        let mut js = JobState::new(job, None, None);
        for _ in 0..skipped {
            js.note_skipped(DateTime::UNIX_EPOCH);
        }
        js
    }

    #[test]
    fn the_table_finds_each_job_by_name_and_keeps_the_later_of_two() {
        let t: JobTable = ["b", "a", "c", "a"]
            .iter()
            .enumerate()
            .map(|(i, n)| state(n, i as u64))
            .collect();
        assert_eq!(t.len(), 3);
        let names: Vec<&str> = t.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(t.get("a").map(|js| js.skipped_total()), Some(3));
        assert_eq!(t.get("b").map(|js| js.skipped_total()), Some(0));
        assert!(t.contains_key("c") && !t.contains_key("d") && t.get("").is_none());
        let m = t.into_map();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    /// The kept result gives back the status's summary it was made from, byte for byte in
    /// status.json, whatever its run id and whichever of the rarer parts it has.
    #[test]
    fn a_kept_result_gives_back_what_it_was_made_from() {
        let p = run_id_prefix(last("").due);
        let id = |n: &str| format!("{p}-{n}");
        let usual = last(&id("3"));
        let k = Kept::from(usual.clone());
        assert!(k.more.is_none(), "a usual result keeps nothing boxed");
        assert_eq!(k.to_last(), usual);
        assert!(k.is_run(&id("3")));
        assert!(!k.is_run(&id("4")) && !k.is_run(&id("03")));
        let other_due = format!(
            "{}-3",
            run_id_prefix(last("").due + chrono::Duration::seconds(1))
        );
        for odd in [
            id("03"),
            other_due,
            id("-3"),
            id("+3"),
            id("99999999999"),
            "by-hand".into(),
            String::new(),
        ] {
            let l = last(&odd);
            let k = Kept::from(l.clone());
            assert!(k.more.is_some(), "{odd}");
            assert_eq!(k.to_last(), l, "{odd}");
            assert!(k.is_run(&odd) && !k.is_run(&id("3")), "{odd}");
        }
        let mut full = last(&id("1"));
        full.exit_code = Some(1);
        full.signal = Some(9);
        full.outcome = Some(Outcome::Failure);
        full.note = Some("a note".into());
        full.log = Some("/r/log.html".into());
        full.report = Some("/r/report.html".into());
        full.output_head = Some("boom".into());
        full.log_url = Some("https://x/log.html".into());
        full.attempts = Some(2);
        full.output_lost = true;
        full.tests = Some(TestStats {
            passed: 1,
            failed: 2,
            ..Default::default()
        });
        let k = Kept::from(full.clone());
        assert_eq!(k.to_last(), full);
        assert_eq!(
            serde_json::to_string(&k.to_last()).unwrap(),
            serde_json::to_string(&full).unwrap()
        );
    }

    /// The daemon holds one `Job` and one `JobState` per configured job for its whole life:
    /// what most jobs lack most of the time (a prepared run, a result, an environment, a user)
    /// must stay boxed, or 10,000 jobs no longer fit in 12 MiB (issue 14). Counted in bytes,
    /// not timed; both were over 400 bytes more before.
    #[test]
    fn the_per_job_state_stays_small() {
        use std::mem::size_of;
        // With its latest result inline (`Kept`, 88 bytes): it was 192 and a boxed 344; 216
        // before what few jobs have was boxed (`Rare`), 184 before its runs in flight and
        // queued were (`Busy`).
        assert!(
            size_of::<JobState>() <= 160,
            "JobState is {} bytes",
            size_of::<JobState>()
        );
        // The Checkmk host and levels (`CheckmkSettings`) and the run setup (`RunSetup`) boxed:
        // it was 320; the name, argv and result as boxed slices, not growable ones: it was 176.
        assert!(size_of::<Job>() <= 152, "Job is {} bytes", size_of::<Job>());
        assert!(
            size_of::<Kept>() <= 88,
            "Kept is {} bytes",
            size_of::<Kept>()
        );
    }
}
