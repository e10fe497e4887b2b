//! `--nproc N`: torchrun's job for one machine, built in. Starts N copies of this program with
//! torchrun's environment (`MASTER_ADDR=127.0.0.1`, a free `MASTER_PORT`, `RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`), then watches them: when one fails, the
//! others are killed and the launcher fails naming it. A child dies with the launcher
//! (`PR_SET_PDEATHSIG`), so none survives it. On Ctrl-C (which reaches every process of the
//! terminal's group) the ranks agree on a step, rank 0 saves `last`, and the launcher waits.
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// Set by SIGINT in the launcher: children are then left to finish on their own.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal that asked the launcher to stop (SIGTERM, SIGHUP), or 0.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

extern "C" fn on_stop(sig: libc::c_int) {
    STOP.store(sig, Ordering::SeqCst);
}

/// A port on the loopback that nothing listens on now (the OS picks it).
pub fn free_port() -> Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("127.0.0.1:0", e))?;
    Ok(probe.local_addr().map_err(|e| Error::io("127.0.0.1:0", e))?.port())
}

/// Runs `nproc` ranks of this program with `args` (without `--nproc`) on this machine and
/// waits for them. `Ok(true)` when every rank succeeded, `Ok(false)` when a Ctrl-C ended them
/// (rank 0 saved `last`), an error naming the first rank that failed otherwise.
///
/// The store's port is free when chosen, but another program may bind it before rank 0 does:
/// rank 0 then exits with [`PORT_IN_USE_EXIT`] before anything is written, and the ranks
/// start over on another port (at most [`PORT_TRIES`] ports).
pub fn launch_local(nproc: usize, args: &[OsString]) -> Result<bool> {
    if nproc == 0 {
        return Err(Error::Config("--nproc must be at least 1".into()));
    }
    // the project's tests pin the first port to one they hold (FIRST_PORT)
    let mut first = std::env::var(FIRST_PORT).ok().and_then(|p| p.parse().ok());
    for attempt in 1..=PORT_TRIES {
        let port = match first.take() {
            Some(p) => p,
            None => free_port()?,
        };
        match launch_on(nproc, args, port)? {
            Launch::Done(ok) => return Ok(ok),
            Launch::PortTaken(port) => log::warn!("--nproc: port {port} was taken before rank 0 could listen on it (attempt {attempt} of {PORT_TRIES}); starting over on another"),
        }
    }
    Err(Error::Dist { rank: 0, reason: format!("{PORT_TRIES} free ports in a row were taken before rank 0 could listen on them") })
}

/// The exit status of a rank whose store could not listen on its port ([`Error::PortInUse`]).
pub const PORT_IN_USE_EXIT: u8 = 98;

/// Ports tried by [`launch_local`] before it gives up.
pub const PORT_TRIES: usize = 5;

/// A test hook: the port [`launch_local`] tries first (tests hold it to see it start over).
pub const FIRST_PORT: &str = "M3AE_TEST_FIRST_PORT";

/// How one launch ended.
enum Launch {
    /// Every rank exited: `Ok(true)`, or `false` after a Ctrl-C.
    Done(bool),
    /// Rank 0 could not listen on this port; every rank was stopped.
    PortTaken(u16),
}

fn launch_on(nproc: usize, args: &[OsString], port: u16) -> Result<Launch> {
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_stop as *const () as libc::sighandler_t);
    }
    log::info!("--nproc {nproc}: starting {nproc} ranks (store on 127.0.0.1:{port})");
    // as torchrun: N processes each running a full-size thread pool would oversubscribe the cores
    let threads = std::env::var_os("OMP_NUM_THREADS").is_none().then(|| {
        log::info!("OMP_NUM_THREADS is set to 1 in each rank (as torchrun does); set it to tune");
        "1"
    });
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(args)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        if let Some(t) = threads {
            cmd.env("OMP_NUM_THREADS", t);
        }
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill the child when the
        // launcher dies, however it dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(e) => {
                kill_all(&mut children);
                return Err(Error::Dist { rank, reason: format!("could not start {}: {e}", exe.display()) });
            }
        }
    }
    watch(&mut children, port)
}

/// Polls the ranks until all exited; the first failure (outside a Ctrl-C) kills the rest.
fn watch(children: &mut [Option<Child>], port: u16) -> Result<Launch> {
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    loop {
        let stop = STOP.load(Ordering::SeqCst);
        if stop != 0 {
            kill_all(children);
            return Err(Error::Dist { rank: 0, reason: format!("the --nproc launcher got signal {stop} and killed every rank") });
        }
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(e) => {
                    kill_all(children);
                    return Err(Error::Dist { rank, reason: format!("could not be watched: {e}") });
                }
            };
            *slot = None;
            statuses[rank] = Some(status);
            if !status.success() && !INTERRUPTED.load(Ordering::SeqCst) {
                kill_all(children);
                if rank == 0 && status.code() == Some(i32::from(PORT_IN_USE_EXIT)) {
                    return Ok(Launch::PortTaken(port));
                }
                return Err(Error::Dist { rank, reason: format!("exited with {status}; the other ranks were stopped") });
            }
        }
        if children.iter().all(Option::is_none) {
            let failed = statuses.iter().position(|s| !s.is_some_and(|s| s.success()));
            return match (failed, INTERRUPTED.load(Ordering::SeqCst)) {
                (None, _) => Ok(Launch::Done(true)),
                (Some(_), true) => Ok(Launch::Done(false)),
                (Some(rank), false) => Err(Error::Dist { rank, reason: format!("exited with {}", statuses[rank].map(|s| s.to_string()).unwrap_or_default()) }),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills and reaps every rank still running.
fn kill_all(children: &mut [Option<Child>]) {
    for child in children.iter_mut().flatten() {
        let _ = child.kill();
    }
    for slot in children.iter_mut() {
        if let Some(mut child) = slot.take() {
            let _ = child.wait();
        }
    }
}
