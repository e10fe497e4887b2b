"""The tables of the end-to-end benchmarks (bench/finetune.sh, bench/pretrain.sh; read by
bench/upstream_bench.py's report for bench/run.sh too): a results folder of bench/e2e_lib.sh
read back, the machine line with the CPU's bf16 features, the three bf16 columns of issue 23."""
import datetime
import json
import os
import platform
import statistics
import subprocess

from e2e_common import ROOT, fmt, read_time_file, write_json


def cpu_line():
    """The CPU model and its bf16 features, from /proc/cpuinfo."""
    cpu, flags = platform.machine(), None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == platform.machine():
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and flags is None:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = ", ".join(f"{f} {'yes' if f in (flags or ()) else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    return f"{cpu}, {os.cpu_count()} CPUs ({bf16})"


def commit():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def write_meta(args):
    """meta.json of a results folder: the shape of the run, the commit, the binary's hash."""
    import hashlib
    write_json(args.out, dict(size=args.size, image_size=args.image_size, threads=args.threads, workers=args.workers,
                              commit=commit(), same_allocator=args.same_allocator, bf16=args.bf16,
                              uptime=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                              binary=args.binary,
                              binary_sha256=hashlib.sha256(open(args.binary, "rb").read()).hexdigest()[:16]))


def machine_line(meta=None):
    meta = meta or {}
    binary = f", m3ae binary sha256 {meta['binary_sha256']}…" if meta.get("binary_sha256") else ""
    return f"{cpu_line()}, commit {meta.get('commit') or commit()} at the run's start (+ working tree){binary}"


class Results:
    """A results folder of bench/e2e_lib.sh: per round r, py_r / rust_r (fp32) and, with
    --bf16, pybf16_r / rustbf16_r (.json, _time.txt from /usr/bin/time, _tree.json from
    bench/tree_rss.py)."""

    def __init__(self, folder):
        self.folder = folder
        self.meta = self.load("meta.json") or {}
        self.rounds = sorted({f.split("_")[1].split(".")[0] for f in os.listdir(folder)
                              if f.startswith(("py_", "rust_")) and f.endswith(".json") and "_tree" not in f}, key=int)

    def load(self, name):
        try:
            return json.load(open(os.path.join(self.folder, name)))
        except (OSError, ValueError):
            return None

    def rate(self, name):
        return (self.load(f"{name}.json") or {}).get("samples_per_second")

    def peak_rss(self, name):
        """/usr/bin/time's %M (for PyTorch the largest of the process and its workers), of
        runs that gave a result."""
        if self.load(f"{name}.json") is None:
            return None
        rss, _ = read_time_file(os.path.join(self.folder, f"{name}_time.txt"))
        return rss or (self.load(f"{name}.json") or {}).get("peak_rss_mb")

    def footprint(self, name):
        return (self.load(f"{name}_tree.json") or {}).get("peak_footprint_mb")

    def ratios(self, num, den):
        """num_r / den_r over the rounds where both ran, e.g. ratios("rust", "py")."""
        out = []
        for r in self.rounds:
            a, b = self.rate(f"{num}_{r}"), self.rate(f"{den}_{r}")
            if a and b:
                out.append(a / b)
        return out

    def median(self, what, side):
        values = [x for x in (what(f"{side}_{r}") for r in self.rounds) if x]
        return statistics.median(values) if values else None


RSS_NOTE = ("samples/s: timed steps x batch / their summed step times (each from the end of the previous step, so "
            "the wait for the batch counts). Peak RSS: /usr/bin/time %M of the process (for PyTorch, the largest of "
            "the main process and its DataLoader workers, not their sum). Footprint: the largest value of the "
            "process's RSS plus its child processes' private memory (USS; PyTorch's DataLoader workers, which share "
            "the model with the parent copy-on-write), sampled by bench/tree_rss.py (RSS every 0.2 s, workers every "
            "10 s).")


def round_lines(res, r, py_name, rust_name, tag=""):
    """Per-round detail: PyTorch's step times, phases, data wait and losses; the port's."""
    out = []
    py, rs = res.load(f"{py_name}.json"), res.load(f"{rust_name}.json")
    if py:
        ph = py.get("phases_median", {})
        out.append(f"- round {r} PyTorch{tag}: step seconds {', '.join(f'{x:.3f}' for x in py['step_seconds'])} "
                   f"(medians: forward {fmt(ph.get('forward'), '.3f')}, backward {fmt(ph.get('backward'), '.3f')}, "
                   f"optimizer {fmt(ph.get('optimizer'), '.3f')}; data wait {fmt(sum(py['data_wait_seconds']), '.3f')} "
                   f"in all); losses {', '.join(f'{x:.3f}' for x in py['losses'])}.")
    if rs:
        out.append(f"- round {r} Rust{tag}: step seconds {', '.join(f'{x:.3f}' for x in rs['step_seconds'])}; process "
                   f"wall {fmt(rs.get('process_wall_seconds'), '.1f')} s (with start-up, the end-of-run validation and "
                   f"checkpoint); losses {', '.join(f'{x:.3f}' for x in rs['losses'] if x is not None)}.")
    return out


def bf16_table(res, workload):
    """The three columns of issue 23 (port bf16, PyTorch bf16 autocast, upstream fp32), per
    round and as medians over the rounds, with the port in fp32 beside them."""
    rounds = [r for r in res.rounds if res.load(f"pybf16_{r}.json") or res.load(f"rustbf16_{r}.json")]
    if not rounds:
        return []
    q = lambda a, b: fmt(a / b, ".2f") + "x" if a and b else "—"  # noqa: E731
    out = ["", f"bf16, {workload} (the port: precision \"bf16\", CPU autocast; PyTorch: torch.autocast(\"cpu\", "
           "dtype=torch.bfloat16) around upstream's training_step), samples/s:", "",
           "| round | port bf16 | PyTorch bf16 | upstream fp32 | port fp32 | port bf16 / PyTorch bf16 "
           "| port bf16 / upstream fp32 | PyTorch bf16 / upstream fp32 | peak RSS MB port bf16 / PyTorch bf16 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        r16, p16, p32, r32 = (res.rate(f"{s}_{r}") for s in ("rustbf16", "pybf16", "py", "rust"))
        out.append(f"| {r} | {fmt(r16, '.3f')} | {fmt(p16, '.3f')} | {fmt(p32, '.3f')} | {fmt(r32, '.3f')} | "
                   f"{q(r16, p16)} | {q(r16, p32)} | {q(p16, p32)} | "
                   f"{fmt(res.peak_rss(f'rustbf16_{r}'), '.0f')} / {fmt(res.peak_rss(f'pybf16_{r}'), '.0f')} |")
    if len(rounds) > 1:
        med = lambda xs: fmt(statistics.median(xs), ".2f") + "x" if xs else "—"  # noqa: E731
        r16, p16, p32, r32 = (res.median(res.rate, s) for s in ("rustbf16", "pybf16", "py", "rust"))
        out += [f"| median | {fmt(r16, '.3f')} | {fmt(p16, '.3f')} | {fmt(p32, '.3f')} | {fmt(r32, '.3f')} | "
                f"{med(res.ratios('rustbf16', 'pybf16'))} | {med(res.ratios('rustbf16', 'py'))} | "
                f"{med(res.ratios('pybf16', 'py'))} | |",
                "", "(samples/s in the median row: each column's median; ratios: the median of the rounds' ratios)"]
    for r in rounds:
        out += round_lines(res, r, f"pybf16_{r}", f"rustbf16_{r}", " bf16")
    return out


def finish(args, res, out, workload):
    """The per-round details and the bf16 table after a report's own lines; written to
    args.out and printed."""
    for r in res.rounds:
        out += round_lines(res, r, f"py_{r}", f"rust_{r}")
    write_report(args, out + bf16_table(res, workload))


def write_report(args, lines):
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")


def today():
    return datetime.date.today().isoformat()


def summary(folder, workload):
    """bench/run.sh's rows for an end-to-end results folder: (fp32 row, bf16 row or None)
    as medians over its rounds."""
    if not folder or not os.path.isdir(folder):
        return None, None
    res = Results(folder)
    if not res.rounds:
        return None, None
    n = len(res.rounds)
    q = lambda xs: f"{statistics.median(xs):.2f}x" if xs else "—"  # noqa: E731
    first = res.load(f"py_{res.rounds[0]}.json") or res.load(f"rust_{res.rounds[0]}.json") or {}
    label = (f"{workload}, {res.meta.get('size', '?')} size, batch {first.get('batch', '?')}, "
             f"{res.meta.get('image_size', '?')} px "
             f"({first.get('warmup', '?')}+{first.get('steps', '?')} steps, median of {n} round{'s' if n > 1 else ''})")
    p32, r32 = res.median(res.rate, "py"), res.median(res.rate, "rust")
    fp32 = [label, fmt(p32, ".3f"), fmt(r32, ".3f"), q(res.ratios("rust", "py")),
            fmt(res.median(res.peak_rss, "py"), ".0f"), fmt(res.median(res.peak_rss, "rust"), ".0f")]
    if not any(res.rate(f"pybf16_{r}") for r in res.rounds):
        return fp32, None
    r16, p16 = res.median(res.rate, "rustbf16"), res.median(res.rate, "pybf16")
    bf16 = [label, fmt(r16, ".3f"), fmt(p16, ".3f"), fmt(p32, ".3f"), q(res.ratios("rustbf16", "pybf16")),
            q(res.ratios("rustbf16", "py")), q(res.ratios("pybf16", "py"))]
    return fp32, bf16


def pipeline_rates(log):
    """bench/pipeline.sh's last line: 'best of each: rust R, torchvision P samples/s per core; …'."""
    import re
    try:
        lines = [line for line in open(log) if line.startswith("best of each")]
    except OSError:
        return None
    m = lines and re.search(r"rust ([0-9.]+), torchvision ([0-9.]+)", lines[-1])
    return (float(m.group(1)), float(m.group(2))) if m else None


def run_sh_tables(pretrain, finetune, pipeline_log):
    """bench/run.sh's second and third tables: the end-to-end workloads in samples/s (higher
    is better, so the ratio is Rust / PyTorch), then their bf16 columns."""
    rows, bf16_rows = [], []
    for folder, workload in ((pretrain, "pretrain (MLM+MIM+ITM)"), (finetune, "finetune (VQA)")):
        fp32, bf16 = summary(folder, workload)
        rows += [fp32] if fp32 else []
        bf16_rows += [bf16] if bf16 else []
    rates = pipeline_rates(pipeline_log) if pipeline_log else None
    if rates:
        rows.append(["input pipeline, 288 px, one core (best of 3 rounds)", f"{rates[1]:.1f}", f"{rates[0]:.1f}",
                     f"{rates[0] / rates[1]:.2f}x", "", ""])
    out = []
    if rows:
        header = ["workload", "PyTorch samples/s", "Rust samples/s", "ratio (Rust/PyTorch)", "PyTorch peak RSS MB",
                  "Rust peak RSS MB"]
        out += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    if bf16_rows:
        header = ["workload", "port bf16", "PyTorch bf16 autocast", "upstream fp32", "port bf16 / PyTorch bf16",
                  "port bf16 / upstream fp32", "PyTorch bf16 / upstream fp32"]
        out += ["", "bf16 on the CPU, samples/s (medians over the rounds; ratios: median of the rounds' ratios):", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in bf16_rows]
    return out
