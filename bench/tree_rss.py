"""Peak memory of a process tree, sampled: the largest sum of RSS and of PSS over a process
and its descendants (DataLoader worker processes included), read from /proc every
--interval seconds until the process exits. PSS splits pages shared between processes
(a forked worker's copy-on-write view of the parent's model) among them, so the PSS sum is
the tree's real footprint; the RSS sum counts shared pages once per process.

Usage: python bench/tree_rss.py --pid PID --out FILE.json [--interval 0.25] [--skip time,timeout]
  --skip  process names (/proc/PID/comm) left out of the sums: the wrappers around the
          measured process (default time,timeout)
No third-party imports, so it starts fast and stays small.
"""
import argparse
import json
import os
import time


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    todo, seen = [pid], []
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


def rollup(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--skip", default="time,timeout")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    peak_rss = peak_pss = 0
    most = samples = 0
    while os.path.exists(f"/proc/{args.pid}"):
        pids = [p for p in tree(args.pid) if comm(p) not in skip]
        rss = pss = 0
        for p in pids:
            r, s = rollup(p)
            rss, pss = rss + r, pss + s
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        most = max(most, len(pids))
        samples += 1
        time.sleep(args.interval)
    with open(args.out, "w") as f:
        json.dump(dict(peak_tree_rss_mb=peak_rss / 1024, peak_tree_pss_mb=peak_pss / 1024,
                       most_processes=most, samples=samples, interval_s=args.interval), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
