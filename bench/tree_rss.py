"""Peak memory of a process tree, sampled: the measured process's RSS plus the private memory
(USS: Private_Clean + Private_Dirty) of its descendants (the PyTorch DataLoader's worker
processes), as one footprint, and its largest value over the run.

Why this sum: a forked worker maps the parent's pages copy-on-write, so adding the workers'
RSS counts the model once per worker; their private pages are what they add to the machine's
use. The main process is read from /proc/PID/statm (counters, no page-table walk), every
--interval seconds; the descendants' USS from /proc/PID/smaps_rollup (a walk of their page
tables, which takes their mmap lock, never the main process's) every --children-every
seconds. An earlier version walked the main process's page tables 4 times a second: on a
7 GB process that cost a fifth of a core and stalled its mmap/munmap calls, so the measured
process is never walked now.

Usage: python bench/tree_rss.py --pid PID --out FILE.json [--interval 0.2]
           [--children-every 10.0] [--skip time,timeout]
  --pid   the process to follow, or a wrapper around it (/usr/bin/time, timeout): processes
          named in --skip are passed through, and the first other one is the measured process
No third-party imports, so it starts fast and stays small.
"""
import argparse
import json
import os
import time

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid):
    todo, seen = children(pid), []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def uss_kb(pid):
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


def measured(root, skip):
    """The first process under `root` (itself included) whose name is not in `skip`."""
    p = root
    while comm(p) in skip:
        kids = children(p)
        if not kids:
            return None
        p = kids[0]
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--children-every", type=float, default=10.0)
    ap.add_argument("--skip", default="time,timeout")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    peak_main = peak_sum = peak_children = 0
    children_kb, last_children, most, samples = 0, 0.0, 0, 0
    main_pid = None
    while os.path.exists(f"/proc/{args.pid}"):
        if main_pid is None or not os.path.exists(f"/proc/{main_pid}"):
            main_pid = measured(args.pid, skip)
        if main_pid is not None:
            now = time.monotonic()
            if now - last_children >= args.children_every:
                kids = descendants(main_pid)
                children_kb = sum(uss_kb(p) for p in kids)
                most = max(most, len(kids))
                last_children = now
            main_kb = rss_kb(main_pid)
            peak_main = max(peak_main, main_kb)
            peak_children = max(peak_children, children_kb)
            peak_sum = max(peak_sum, main_kb + children_kb)
            samples += 1
        time.sleep(args.interval)
    with open(args.out, "w") as f:
        json.dump(dict(peak_main_rss_mb=peak_main / 1024, peak_children_uss_mb=peak_children / 1024,
                       peak_footprint_mb=peak_sum / 1024, most_children=most, samples=samples,
                       interval_s=args.interval, children_every_s=args.children_every,
                       sampler_cpu_seconds=sum(os.times()[:2])), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
