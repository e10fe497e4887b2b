//! The dist module on CPU: Gloo over loopback between processes that this test binary spawns
//! from itself (the ignored `worker` test, selected by `M3AE_DIST_TEST_ROLE`), rendezvous and
//! store failures, and the shim's independence from gloo's headers.
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use m3ae::dist::{Backend, ProcessGroup, Rendezvous};
use m3ae::Error;
use tch::{Device, Kind, Tensor};

const ROLE: &str = "M3AE_DIST_TEST_ROLE";
const TIMEOUT: &str = "M3AE_DIST_TEST_TIMEOUT_S";

/// A port nobody listens on (the OS picks it; it is free again once the probe closes).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The exit status of a worker whose store found its port taken.
const PORT_IN_USE: i32 = m3ae::dist::launch::PORT_IN_USE_EXIT as i32;

/// Runs `body` on a fresh port, and again on another while it returns `None`: another
/// program bound the port between `free_port`'s probe and rank 0's store (EADDRINUSE).
fn on_free_port<T>(mut body: impl FnMut(u16) -> Option<T>) -> T {
    for _ in 0..5 {
        if let Some(t) = body(free_port()) {
            return t;
        }
    }
    panic!("5 free ports in a row were taken before rank 0 could listen on them");
}

/// One spawned rank: its process and the files holding its stdout and stderr.
struct Rank {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Rank {
    fn spawn(tag: &str, role: &str, rank: usize, world: usize, port: u16, timeout_s: u64) -> Rank {
        let dir = std::env::temp_dir().join(format!("m3ae-dist-{tag}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp folder");
        let (out, err) = (dir.join(format!("rank{rank}.out")), dir.join(format!("rank{rank}.err")));
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["worker", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(TIMEOUT, timeout_s.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("GLOO_SOCKET_IFNAME", "lo")
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdout(Stdio::from(File::create(&out).expect("stdout file")))
            .stderr(Stdio::from(File::create(&err).expect("stderr file")))
            .spawn()
            .expect("spawning a rank");
        Rank { child, out, err }
    }

    /// Its exit status within `limit` (killed past that: `None`).
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("polling a rank") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until it printed `line` (killing everything past `limit`); `false` when it
    /// exited because its store's port was taken.
    fn wait_for_line(&mut self, line: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.stdout().contains(line) {
            assert!(start.elapsed() < limit, "no {line:?} within {limit:?}; stderr:\n{}", self.stderr());
            match self.child.try_wait().expect("polling") {
                Some(s) if s.code() == Some(PORT_IN_USE) => return false,
                Some(s) => panic!("the rank exited early ({s}); stderr:\n{}", self.stderr()),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        true
    }
}

impl Drop for Rank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn collectives_across_two_processes() {
    let mut ranks = on_free_port(|port| {
        let mut ranks: Vec<Rank> = (0..2).map(|r| Rank::spawn("coll", "collectives", r, 2, port, 30)).collect();
        let port_taken = ranks[0].wait(Duration::from_secs(40)).is_some_and(|s| s.code() == Some(PORT_IN_USE));
        (!port_taken).then_some(ranks)
    });
    for (r, rank) in ranks.iter_mut().enumerate() {
        let status = rank.wait(Duration::from_secs(40));
        assert!(status.is_some_and(|s| s.success()), "rank {r}: {status:?}\nstdout:\n{}\nstderr:\n{}", rank.stdout(), rank.stderr());
        assert!(rank.stdout().contains("collectives ok"), "rank {r} did not run the checks:\n{}", rank.stdout());
    }
}

/// Kills rank `victim` of 2 while both loop on allreduce; the survivor must exit with an error
/// naming the victim within 5 s, though the timeout is 60 s.
fn survivor_names_the_dead_rank(victim: usize) {
    let mut ranks = on_free_port(|port| {
        let mut ranks: Vec<Rank> = (0..2).map(|r| Rank::spawn(&format!("kill{victim}"), "loop", r, 2, port, 60)).collect();
        ranks.iter_mut().all(|rank| rank.wait_for_line("looping", Duration::from_secs(30))).then_some(ranks)
    });
    ranks[victim].child.kill().expect("killing a rank");
    let killed = Instant::now();
    let survivor = &mut ranks[1 - victim];
    let status = survivor.wait(Duration::from_secs(5));
    let stderr = survivor.stderr();
    assert!(status.is_some(), "the survivor still ran 5 s after rank {victim} died; stderr:\n{stderr}");
    assert!(!status.is_some_and(|s| s.success()), "the survivor exited successfully:\n{stderr}");
    assert!(stderr.contains(&format!("rank {victim}")), "the error does not name rank {victim}:\n{stderr}");
    eprintln!("rank {victim} killed: the survivor ended after {:?}", killed.elapsed());
}

#[test]
fn a_dead_rank_ends_the_other_quickly() {
    survivor_names_the_dead_rank(1);
}

#[test]
fn a_dead_store_host_ends_the_other_quickly() {
    survivor_names_the_dead_rank(0);
}

fn lone(rank: usize, port: u16) -> Rendezvous {
    Rendezvous {
        master_addr: "127.0.0.1".into(),
        master_port: port,
        rank,
        world_size: 2,
        local_rank: rank,
        agent_store: false,
        restart_count: 0,
        timeout: Duration::from_secs(2),
    }
}

fn dist_error(result: m3ae::Result<ProcessGroup>) -> (usize, String) {
    match result {
        Err(Error::Dist { rank, reason }) => (rank, reason),
        Err(e) => panic!("not a Dist error: {e}"),
        Ok(_) => panic!("a group formed without its peer"),
    }
}

#[test]
fn a_rank_that_never_joins_times_out() {
    let start = Instant::now();
    let (rank, reason) = dist_error(on_free_port(|port| Some(ProcessGroup::new(&lone(0, port), Backend::Gloo)).filter(|r| !matches!(r, Err(Error::PortInUse { .. })))));
    assert_eq!(rank, 0);
    assert!(reason.contains("rendezvous") && reason.contains("2 ranks"), "{reason}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
}

#[test]
fn an_absent_store_times_out() {
    let start = Instant::now();
    let (rank, reason) = dist_error(ProcessGroup::new(&lone(1, free_port()), Backend::Gloo));
    assert_eq!(rank, 1);
    assert!(reason.contains("hosted by rank 0"), "{reason}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
}

/// A store whose port another program holds: rank 0 says so with `Error::PortInUse`, and
/// `m3ae --nproc` (whose first port a test hook pins to the taken one) starts over on another.
#[test]
fn a_taken_port_is_reported_and_the_launcher_moves_on() {
    let held = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = held.local_addr().unwrap().port();
    match ProcessGroup::new(&lone(0, port), Backend::Gloo) {
        Err(Error::PortInUse { addr, .. }) => assert_eq!(addr, format!("127.0.0.1:{port}")),
        Err(e) => panic!("not PortInUse: {e}"),
        Ok(_) => panic!("a store listened on a held port"),
    }
    // a pre-training run too small to matter, with the launcher's first port held
    let data = std::env::temp_dir().join(format!("m3ae-dist-port-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let set = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("parity/train-vqa");
    let out = Command::new(env!("CARGO_BIN_EXE_m3ae"))
        .args(["finetune", "vqa_vqa_rad", "--nproc", "2", "--run-dir"])
        .arg(data.join("run"))
        .arg("--config")
        .arg(set.join("config.json"))
        .args(["--set", &format!("data_root={:?}", set.join("data")), "--set", &format!("tokenizer={:?}", set.join("tokenizer")), "--set", &format!("load_path={:?}", set.join("model"))])
        .args(["--set", "test_only=true", "--set", "max_steps=1", "--set", "per_gpu_batchsize=5", "--set", "batch_size=10"])
        .env(m3ae::dist::launch::FIRST_PORT, port.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    assert!(stderr.contains(&format!("port {port} was taken")), "the launcher did not start over:\n{stderr}");
    drop(held);
}

/// The shim references libtorch's c10d only: our gloo declarations merely let it parse.
#[test]
fn the_shim_references_no_gloo_symbol() {
    let archive = PathBuf::from(env!("OUT_DIR")).join("libm3ae_c10d.a");
    let out = Command::new("nm").args(["-C", "--undefined-only"]).arg(&archive).output().expect("running nm");
    assert!(out.status.success(), "nm {}: {}", archive.display(), String::from_utf8_lossy(&out.stderr));
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(symbols.contains("c10d::ProcessGroupGloo::ProcessGroupGloo("), "not the shim's archive:\n{symbols}");
    let gloo: Vec<&str> = symbols.lines().filter(|l| l.contains("gloo::")).collect();
    assert!(gloo.is_empty(), "the shim references gloo itself: {gloo:#?}");
}

/// The body of a spawned rank; a no-op (ignored) in a normal run.
#[test]
#[ignore = "a rank spawned by the other tests"]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let timeout = std::env::var(TIMEOUT).ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let rdzv = Rendezvous::from_env().expect("torchrun's variables").expect("a multi-process run");
    let pg = match ProcessGroup::new(&rdzv.with_timeout(Duration::from_secs(timeout)), Backend::Gloo) {
        Ok(pg) => pg,
        Err(e @ Error::PortInUse { .. }) => {
            eprintln!("{e}");
            std::process::exit(PORT_IN_USE);
        }
        Err(e) => panic!("joining the group: {e}"),
    };
    let result = match role.as_str() {
        "collectives" => collectives(&pg),
        "loop" => forever(&pg),
        other => panic!("unknown role {other}"),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(3);
    }
    println!("collectives ok");
}

fn forever(pg: &ProcessGroup) -> m3ae::Result<()> {
    let mut t = Tensor::ones([1000], (Kind::Float, Device::Cpu));
    pg.allreduce_sum(&mut t)?;
    println!("looping");
    loop {
        pg.allreduce_sum(&mut t)?;
        let _ = t.fill_(1.0);
    }
}

fn check(what: &str, got: &Tensor, want: &Tensor) -> m3ae::Result<()> {
    if got.size() != want.size() || got.kind() != want.kind() || !got.equal(want) {
        return Err(Error::input(what, format!("got {got:?} ({:?}), want {want:?}", got.kind())));
    }
    Ok(())
}

fn collectives(pg: &ProcessGroup) -> m3ae::Result<()> {
    let (rank, world) = (pg.rank() as i64, pg.world_size() as i64);
    let cpu = Device::Cpu;
    // odd sizes in every dtype; the values are small integers, exact even in bf16
    for (kind, n) in [(Kind::Float, 7), (Kind::Double, 1001), (Kind::Int64, 3), (Kind::BFloat16, 5)] {
        let base = Tensor::arange(n, (Kind::Int64, cpu));
        let mut t = (&base + 10 * rank).to_kind(kind);
        pg.allreduce_sum(&mut t)?;
        let want = (&base * world + 10 * world * (world - 1) / 2).to_kind(kind);
        check(&format!("allreduce_sum {kind:?}"), &t, &want)?;
    }
    let mut t = Tensor::full([9], rank as f64 + 0.5, (Kind::Float, cpu));
    pg.allreduce_mean(&mut t)?;
    check("allreduce_mean", &t, &Tensor::full([9], (world - 1) as f64 / 2.0 + 0.5, (Kind::Float, cpu)))?;
    // refused on every rank before any communication: the group stays usable
    let mut ints = Tensor::ones([2], (Kind::Int64, cpu));
    if pg.allreduce_mean(&mut ints).is_ok() {
        return Err(Error::input("allreduce_mean", "averaged an integer tensor"));
    }
    let mut strided = Tensor::ones([2, 3], (Kind::Float, cpu)).tr();
    if pg.allreduce_sum(&mut strided).is_ok() {
        return Err(Error::input("allreduce_sum", "accepted a non-contiguous tensor"));
    }
    let mut t = Tensor::full([11], rank as f64, (Kind::Double, cpu));
    pg.broadcast(&mut t, 1)?;
    check("broadcast", &t, &Tensor::full([11], 1.0, (Kind::Double, cpu)))?;
    let mut t = Tensor::full([3], rank as f64 * 2.0 + 1.0, (Kind::BFloat16, cpu));
    pg.broadcast(&mut t, 0)?;
    check("broadcast bf16", &t, &Tensor::full([3], 1.0, (Kind::BFloat16, cpu)))?;
    let parts = pg.allgather(&Tensor::from_slice(&[rank, 2 * rank, 7]))?;
    for (r, part) in parts.iter().enumerate() {
        check(&format!("allgather part {r}"), part, &Tensor::from_slice(&[r as i64, 2 * r as i64, 7]))?;
    }
    // uneven shards: rank r holds r + 1 rows of value r
    let rows = pg.allgather_rows(&Tensor::full([rank + 1, 3], rank as f64, (Kind::Float, cpu)))?;
    let want: Vec<Tensor> = (0..world).map(|r| Tensor::full([r + 1, 3], r as f64, (Kind::Float, cpu))).collect();
    check("allgather_rows", &rows, &Tensor::cat(&want, 0))?;
    pg.barrier()
}
