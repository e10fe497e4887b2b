//! Runs the study's jobs as `m3ae` child processes, a few at a time, with one progress bar
//! per running job. A job that finished before (its marker `runs/<id>.done` exists) is
//! skipped, and an interrupted run continues with `--resume`, so a rerun of the study
//! resumes it.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::plan::{Job, JobKind};
use crate::error::{Error, Result};

/// How the jobs run.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The `m3ae` binary.
    pub binary: PathBuf,
    /// Jobs at once.
    pub parallel: usize,
    /// Intra-op threads of each job (OMP/MKL_NUM_THREADS).
    pub threads: usize,
}

impl RunnerOptions {
    /// This executable, with the machine's cores split between `parallel` jobs.
    pub fn for_this_machine(parallel: Option<usize>) -> Result<RunnerOptions> {
        let binary = std::env::current_exe().map_err(|e| Error::io("the m3ae executable", e))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // small models scale poorly across threads: one job per core does more work
        let parallel = parallel.unwrap_or(cores).clamp(1, cores.max(1));
        Ok(RunnerOptions { binary, parallel, threads: (cores / parallel).max(1) })
    }
}

/// The marker a finished job leaves.
pub fn done_marker(runs: &Path, job: &Job) -> PathBuf {
    runs.join(format!("{}.done", job.id))
}

/// The job's output (stdout and stderr of every attempt).
pub fn log_path(runs: &Path, job: &Job) -> PathBuf {
    runs.join(format!("{}.log", job.id))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Done,
    Failed,
}

/// Runs every job of `jobs` whose marker is missing; returns how many ran. The first failure
/// stops new jobs from starting (running ones finish) and is returned as an error naming the
/// job, its exit status and its log.
pub fn run_jobs(jobs: &[Job], runs: &Path, o: &RunnerOptions) -> Result<usize> {
    std::fs::create_dir_all(runs).map_err(|e| Error::io(runs, e))?;
    let states: Vec<State> = jobs.iter().map(|j| if done_marker(runs, j).is_file() { State::Done } else { State::Pending }).collect();
    let todo = states.iter().filter(|s| **s == State::Pending).count();
    let skipped = jobs.len() - todo;
    if skipped > 0 {
        log::info!("{skipped} of {} jobs already done (their .done markers exist): skipped", jobs.len());
    }
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(jobs.len() as u64));
    overall.set_style(ProgressStyle::with_template("{prefix:>8} [{bar:30.green}] {pos}/{len} jobs, {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    overall.set_prefix("study");
    overall.set_position(skipped as u64);
    let shared = Mutex::new((states, None::<Error>));
    let ran = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..o.parallel {
            s.spawn(|| loop {
                let next = {
                    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if g.1.is_some() {
                        return;
                    }
                    let (states, _) = &mut *g;
                    let ready = (0..jobs.len()).find(|&i| states[i] == State::Pending && jobs[i].deps.iter().all(|&d| states[d] == State::Done));
                    match ready {
                        Some(i) => {
                            states[i] = State::Running;
                            Some(i)
                        }
                        None if states.contains(&State::Pending) => None,
                        None => return,
                    }
                };
                let Some(i) = next else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let bar = multi.add(job_bar(&jobs[i]));
                let result = run_one(&jobs[i], runs, o, &bar);
                bar.finish_and_clear();
                multi.remove(&bar);
                let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(()) => {
                        g.0[i] = State::Done;
                        overall.inc(1);
                        ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) => {
                        g.0[i] = State::Failed;
                        g.1.get_or_insert(e);
                    }
                }
            });
        }
    });
    overall.finish_and_clear();
    let (_, err) = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    match err {
        Some(e) => Err(e),
        None => Ok(ran.into_inner()),
    }
}

fn job_bar(job: &Job) -> ProgressBar {
    let bar = ProgressBar::new(job.steps.unwrap_or(0));
    let template = if job.steps.is_some() { "{prefix:>28} [{bar:30.cyan}] step {pos}/{len} {msg}" } else { "{prefix:>28} {spinner} {elapsed} {msg}" };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_prefix(job.id.clone());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The last logged step and training losses of a run, from its metrics.jsonl.
fn last_step(run_dir: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).ok()?;
    let line = text.lines().rev().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|v| v.as_object().is_some_and(|o| o.keys().any(|k| k.ends_with("/train/loss"))))?;
    let losses: Vec<String> = line.as_object()?.iter().filter(|(k, _)| k.ends_with("/train/loss")).filter_map(|(k, v)| Some(format!("{} {:.3}", k.trim_end_matches("/train/loss"), v.as_f64()?))).collect();
    Some((line["step"].as_u64()?, losses.join(" ")))
}

fn run_one(job: &Job, runs: &Path, o: &RunnerOptions, bar: &ProgressBar) -> Result<()> {
    // a run folder with a checkpoint but no marker was interrupted: continue it
    let resume = job.resume_args.as_ref().filter(|_| job.run_dir.join("checkpoints/last").exists());
    let args = resume.unwrap_or(&job.args);
    let log_file = log_path(runs, job);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_file).map_err(|e| Error::io(&log_file, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&log_file, e))?;
    // stage 0 runs alone (every other job waits for it), so it gets every core
    let threads = if job.kind == JobKind::Encoders { o.parallel * o.threads } else { o.threads }.to_string();
    let mut child = Command::new(&o.binary)
        .args(args)
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| Error::io(&o.binary, e))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::io(&o.binary, e))? {
            break status;
        }
        if let Some((step, losses)) = last_step(&job.run_dir).filter(|_| job.steps.is_some()) {
            bar.set_position(step);
            bar.set_message(losses);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !status.success() {
        return Err(Error::Config(format!("{} failed ({status}): m3ae {}; its output: {}", job.id, args.join(" "), log_file.display())));
    }
    let marker = done_marker(runs, job);
    std::fs::write(&marker, format!("m3ae {}\n", args.join(" "))).map_err(|e| Error::io(&marker, e))
}
