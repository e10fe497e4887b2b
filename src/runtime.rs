//! Process-wide settings for running libtorch on the CPU.
//!
//! libtorch allocates every tensor with the C allocator. glibc serves large requests (above
//! a threshold that starts at 128 KiB) with fresh `mmap`s and hands them back with `munmap` on
//! free. A forward pass therefore page-faults and zeroes every activation buffer again, on
//! every layer of every step. With `perf`, about 5% of `infer` went to `exc_page_fault` and
//! `clear_page_erms`. Python's PyTorch runs with the same default.

/// glibc's largest mmap threshold (`DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit): 32 MiB.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory kept at the top of the heap before glibc trims it back to the kernel.
pub const TRIM_THRESHOLD: usize = 1 << 30;
/// Extra heap requested on each growth, so a layer's buffers come from one `brk`.
pub const TOP_PAD: usize = 64 << 20;

/// Serves tensor buffers of up to 32 MiB from the heap. Freed buffers stay mapped, up to
/// 1 GiB, and the next layer reuses them without page faults. Call it once, at startup,
/// before any tensor exists. On CPU `infer` this is about 10–15% faster. Peak RSS rises by
/// about 2% (bench/NOTES.md). Settings you give glibc yourself win: if any of
/// `GLIBC_TUNABLES`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `MALLOC_TOP_PAD_` is
/// set, nothing changes. Returns false where nothing changed: such a setting is present, the
/// allocator is not glibc's, or glibc refused a value.
pub fn keep_freed_tensor_memory() -> bool {
    const USER_SETTINGS: [&str; 4] = ["GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"];
    if USER_SETTINGS.iter().any(|v| std::env::var_os(v).is_some()) {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters. It is called before any tensor
        // exists, and glibc takes its own lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Makes libtorch run the calling thread's tensor operations on that thread alone. Returns
/// false where it could not (no OpenMP runtime found), which only costs speed.
///
/// With OpenMP, libtorch gives every thread that runs a parallel operation its own team of
/// `get_num_threads()` threads, kept alive while the thread lives: a loader worker that
/// zero-fills or copies an image batch (parallel above 32 k elements) would hold one next to
/// the training thread's. libgomp stops spinning at barriers once it manages more threads
/// than there are CPUs. In one process, two side threads holding such teams slowed the
/// paper-size VQA step from 6.0–6.7 s to 7.4–7.7 s (bench/NOTES.md); in the trainer, removing
/// its loader threads' teams made no difference we could measure. Call it first thing on
/// helper threads that build tensors.
pub fn serial_tensor_ops_on_this_thread() -> bool {
    // ATen sets a thread's OpenMP team size on the thread's first `get_num_threads`; after it,
    // the size set here stays, and parallel_for runs inline where it is 1
    tch::get_num_threads();
    // SAFETY: dlsym only looks the symbol up; the OpenMP runtime libtorch loaded exports
    // `void omp_set_num_threads(int)`, which sets the calling thread's team size.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, c"omp_set_num_threads".as_ptr());
        if sym.is_null() {
            return false;
        }
        let set: extern "C" fn(libc::c_int) = std::mem::transmute(sym);
        set(1);
    }
    tch::get_num_threads() == 1
}

/// The variable ProcessGroupNCCL reads, in its constructor, to make a timed-out or failed
/// collective throw (the error reaches the caller) instead of leaving it to the watchdog,
/// which aborts the process. The constructor has no option for it.
pub const NCCL_BLOCKING_WAIT: &str = "TORCH_NCCL_BLOCKING_WAIT";

/// Sets the environment libtorch reads for this process: `TORCH_NCCL_BLOCKING_WAIT=1`, unless
/// it is set already (a user's own setting wins). Call it first thing in `main`, before any
/// thread starts: `setenv` is not thread-safe (a concurrent `getenv`, in libtorch or glibc,
/// may read freed memory), so the C++ shims never set a variable themselves. `m3ae` does.
pub fn set_process_env() {
    if std::env::var_os(NCCL_BLOCKING_WAIT).is_none() {
        std::env::set_var(NCCL_BLOCKING_WAIT, "1");
    }
}
