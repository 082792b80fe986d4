//! CPU used by each kind of thread while one side of a bench runs, for
//! `FERMION_BENCH_THREADS=1`: how much of the machine the tokio workers and the log writer
//! each got. Tokio's own metrics count a worker busy while it is blocked on a lock or waiting
//! for a core; this counts the CPU it really had.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

/// A reading of every thread's CPU time, taken when a side starts, if asked for.
pub struct ThreadCpu(Option<(Instant, Threads)>);

/// Each thread's id, with its name and CPU seconds.
type Threads = HashMap<String, (String, f64)>;

impl ThreadCpu {
    /// Reads the threads now, if `FERMION_BENCH_THREADS` is set; otherwise does nothing.
    pub fn start() -> Self {
        Self(std::env::var_os("FERMION_BENCH_THREADS").map(|_| (Instant::now(), read_threads())))
    }

    /// Prints one line labelled `side`: for each thread name, the cores its threads used since
    /// `start` (threads that ended meanwhile are not counted).
    pub fn report(&self, side: &str) {
        let Some((start, before)) = &self.0 else {
            return;
        };
        // The reading at the end of the timed part, if one was marked: a log's writer thread
        // ends with its store, before this report.
        let (end, after) = END
            .lock()
            .ok()
            .and_then(|mut end| end.take())
            .unwrap_or_else(|| (Instant::now(), read_threads()));
        let seconds = end.duration_since(*start).as_secs_f64();
        let mut cores: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (name, cpu)) in after {
            let before = before.get(&tid).map_or(0.0, |(_, cpu)| *cpu);
            *cores.entry(name).or_default() += (cpu - before) / seconds;
        }
        let used: Vec<String> = cores
            .iter()
            .filter(|(_, used)| **used >= 0.01)
            .map(|(name, used)| format!("{name} {used:.2}"))
            .collect();
        eprintln!("  {side}: cores used, by thread name: {}", used.join(", "));
    }
}

/// The end of the timed part of the side now running, read before its threads end.
static END: Mutex<Option<(Instant, Threads)>> = Mutex::new(None);

/// Marks the end of the timed part, if thread readings were asked for.
pub fn mark_end() {
    if std::env::var_os("FERMION_BENCH_THREADS").is_some()
        && let Ok(mut end) = END.lock()
    {
        *end = Some((Instant::now(), read_threads()));
    }
}

/// A `/proc/.../stat` line's command name and user + system CPU seconds.
pub fn name_and_cpu(stat: &str) -> Option<(String, f64)> {
    // The name is in parentheses and may hold spaces; utime and stime are the 12th and 13th
    // fields after it, in ticks of 1/100 s.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

/// Each thread's id, name and CPU seconds so far.
fn read_threads() -> Threads {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let tid = task.file_name().to_string_lossy().into_owned();
            Some((tid, name_and_cpu(&stat)?))
        })
        .collect()
}
