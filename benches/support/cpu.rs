//! CPU time per process during a phase, from `/proc/<pid>/stat` (utime + stime, 10 ms ticks):
//! this process (pg2qdrant runs in it), Qdrant, and the PostgreSQL backends serving the phase
//! (found by application name in `pg_stat_activity`, sampled every 100 ms, so a backend that
//! lives shorter than that is missed). The sampling costs PostgreSQL one tiny query per 100 ms.
//!
//! The bench's own watching runs on threads named [`WATCH`] (this sampler, on a runtime of its
//! own; a poller of point counts): their CPU is left out of pg2qdrant's.
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

/// The name of the bench's watching threads.
pub const WATCH: &str = "bench-watch";

const TICK: f64 = 0.01;

fn ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds of the processes `pids` (comma-separated) so far, their ended threads included
/// (10 ms ticks).
#[allow(dead_code)]
pub fn seconds_of(pids: &str) -> f64 {
    pids.split(',').map(|p| ticks(p).unwrap_or(0)).sum::<u64>() as f64 * TICK
}

/// CPU seconds of this process's living threads but the [`WATCH`] ones
/// (`/proc/self/task/*/schedstat`, nanoseconds: finer than the 10 ms ticks, for phases of a
/// fraction of a second). A thread that ends between two readings takes its time with it; the
/// phases read this while their clients live.
#[allow(dead_code)]
pub fn own() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            (name.trim() != WATCH).then(|| std::fs::read_to_string(dir.join("schedstat")).ok())?
        })
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        * 1e-9
}

/// The calling thread's CPU seconds (nanoseconds).
pub fn this_thread() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        * 1e-9
}

/// Seconds of CPU per process kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub ours: f64,
    pub postgres: f64,
    pub qdrant: f64,
}

impl Totals {
    /// `name: rows/s | CPU µs/row: ...` for `rows` rows in `secs` seconds.
    #[allow(dead_code)]
    pub fn line(&self, name: &str, rows: i64, secs: f64) -> String {
        self.line_for(name, rows, secs, "qdrant")
    }

    /// [`Totals::line`] with the sampled server (`qdrant` field) named `server`.
    pub fn line_for(&self, name: &str, rows: i64, secs: f64, server: &str) -> String {
        let per = |s: f64| s * 1e6 / rows as f64;
        let all = self.ours + self.postgres + self.qdrant;
        format!(
            "{name:<34} {:>8.0} rows/s | CPU µs/row: pg2qdrant {:>5.1}  postgres {:>5.1}  {server} {:>5.1} | pg2qdrant share {:>3.0} %",
            rows as f64 / secs,
            per(self.ours),
            per(self.postgres),
            per(self.qdrant),
            if all > 0.0 { 100.0 * self.ours / all } else { 0.0 }
        )
    }
}

pub struct Sampler {
    stop: oneshot::Sender<()>,
    handle: std::thread::JoinHandle<Totals>,
}

/// Starts sampling on a [`WATCH`] thread; `apps` are the application names of the backends to
/// count, `url` the database they serve.
pub fn start(url: &str, server_pid: &str, apps: &'static [&'static str]) -> Sampler {
    let (stop, stopped) = oneshot::channel();
    let (url, server_pid) = (url.to_owned(), server_pid.to_owned());
    let handle = std::thread::Builder::new()
        .name(WATCH.into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(sample(url, server_pid, apps, stopped))
        })
        .unwrap();
    Sampler { stop, handle }
}

async fn sample(
    url: String,
    server_pid: String,
    apps: &'static [&'static str],
    mut stopped: oneshot::Receiver<()>,
) -> Totals {
    let me0 = ticks("self").unwrap_or(0);
    let mine0 = this_thread();
    // The server may be several processes (a cluster's nodes): their pids, comma-separated.
    let server = || {
        server_pid
            .split(',')
            .map(|p| ticks(p).unwrap_or(0))
            .sum::<u64>()
    };
    let q0 = server();
    let (pg, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let mut seen: HashMap<i32, (u64, u64)> = HashMap::new();
    let mut first = true;
    loop {
        if let Ok(rows) = pg
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1)",
                &[&apps],
            )
            .await
        {
            for r in rows {
                let pid: i32 = r.get(0);
                if let Some(t) = ticks(&pid.to_string()) {
                    let e = seen.entry(pid).or_insert((if first { t } else { 0 }, t));
                    e.1 = e.1.max(t);
                }
            }
        }
        first = false;
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let me = (ticks("self").unwrap_or(0) - me0) as f64 * TICK;
    Totals {
        // Less this thread's own sampling.
        ours: (me - (this_thread() - mine0)).max(0.0),
        postgres: seen.values().map(|(a, b)| b - a).sum::<u64>() as f64 * TICK,
        qdrant: (server() - q0) as f64 * TICK,
    }
}

impl Totals {
    /// Less `secs` of this process's CPU spent watching on another [`WATCH`] thread.
    #[allow(dead_code)]
    pub fn less_watching(mut self, secs: f64) -> Totals {
        self.ours = (self.ours - secs).max(0.0);
        self
    }
}

impl Totals {
    /// With pg2qdrant's CPU measured elsewhere (its own processes).
    #[allow(dead_code)]
    pub fn with_ours(mut self, secs: f64) -> Totals {
        self.ours = secs;
        self
    }
}

impl Sampler {
    pub async fn stop(self) -> Totals {
        let _ = self.stop.send(());
        let handle = self.handle;
        tokio::task::spawn_blocking(move || handle.join().unwrap())
            .await
            .unwrap()
    }
}
