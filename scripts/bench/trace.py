#!/usr/bin/env python3
"""trace.py - turn the public Alibaba GPU 2023 trace into the node and job tables the
benchmarks read (scripts/bench/slurm and scripts/bench/e2e). Python 3, standard library only.

It only reshapes rows of the data set: it never invents nodes, jobs or sizes. Every row it
writes comes from one row of the input, with the conversions listed below.

Input (a data directory, see its README.md; default: $CPN_DATA, else <repo>/../shared/data):
  alibaba_gpu_v2023_nodes.csv   sn,cpu_milli,memory_mib,gpu,model          (1,523 nodes)
  job_requests_normalized.csv   the merged request schema; only rows with
                                source == "alibaba_gpu_v2023" are used       (8,152 pods)

Usage:
  trace.py nodes [--data DIR] [--sample N] [--gpu-only] [-o nodes.csv]
  trace.py jobs  [--data DIR] [--limit N] [--offset K] [--gpu-only] [--status S,...]
                 [-o jobs.csv]
  trace.py stats --nodes nodes.csv --jobs jobs.csv     (supply vs demand; jobs that fit no node)
  Without -o the table goes to stdout. Output is deterministic: same input and options,
  same bytes.

Output 1: the node table (one row per node, in the order of the node file), CSV with header
  node_id,gpu_model,gpu_count,cpu_cores,memory_mib
  node_id     the trace's `sn` (e.g. openb-node-0042), unique
  gpu_model   the trace's `model` (G2, T4, P100, G3, V100M16, V100M32, A10); empty = no GPU
  gpu_count   GPUs in the node (integer, 0 for CPU-only nodes)
  cpu_cores   cpu_milli / 1000 (every node in the trace has whole cores)
  memory_mib  memory in MiB, as in the trace (integer)
  --sample N  keeps N nodes evenly spaced over the file (row floor(i * total / N) for
              i = 0..N-1), which keeps the mix of models of the whole cluster.
  --gpu-only  drops nodes without GPUs (applied before --sample).

Output 2: the job table (one row per request, in submit order), CSV with header
  request_id,submit_order,submit_time_s,gpu_count,gpu_fraction,gpu_type_constraint,
  cpu_milli,cpu_cores,memory_gib,memory_mib,duration_s,status
  request_id          the trace's request id (openb-pod-NNNN), unique
  submit_order        0, 1, 2, ... in this file: rows sorted by (submit_time_s, input row)
  submit_time_s       seconds from the start of the trace, as in the trace
  gpu_count           GPUs asked for. A pod that asks for a fraction of one GPU (gpu_fraction
                      < 1, GPU sharing) is ROUNDED UP TO 1 whole GPU: neither Slurm's GRES nor
                      cpn's packages sell fractions of a GPU. 0 = CPU-only job.
  gpu_fraction        the trace's fraction of one GPU (informational; empty if none)
  gpu_type_constraint GPU models the job accepts, '|'-separated (any one of them), duplicates
                      removed, first-seen order kept; empty = any model. (From the trace's
                      gpuspec33 file: author-augmented, see the data README.)
  cpu_milli           CPU asked for, thousandths of a core, exact (cpu_cores of the trace*1000)
  cpu_cores           ceil(cpu_milli / 1000), at least 1: whole cores, as both Slurm
                      (CR_Core) and cpn (integer cores) allocate them
  memory_gib          memory as in the trace (GiB, 4 decimals)
  memory_mib          round(memory_gib * 1024): the trace's original MiB figure (the 4-decimal
                      GiB value is within 0.05 MiB of it)
  duration_s          end - start of the pod in the trace; empty when the trace has no end
                      (e.g. pods still Pending). Benchmarks that must hold resources choose
                      their own run time and say so.
  status              the trace's pod_phase (Running, Failed, Pending, Succeeded)
  Subsets (applied in this order): --status keeps only those phases; --gpu-only keeps jobs
  with gpu_count > 0; rows are sorted by submit time; --offset K skips the first K;
  --limit N keeps the next N. submit_order is numbered after all of that.
"""

import argparse
import csv
import math
import os
import sys

NODES_FILE = "alibaba_gpu_v2023_nodes.csv"
JOBS_FILE = "job_requests_normalized.csv"
JOBS_SOURCE = "alibaba_gpu_v2023"

NODE_COLS = ["node_id", "gpu_model", "gpu_count", "cpu_cores", "memory_mib"]
JOB_COLS = ["request_id", "submit_order", "submit_time_s", "gpu_count", "gpu_fraction",
            "gpu_type_constraint", "cpu_milli", "cpu_cores", "memory_gib", "memory_mib",
            "duration_s", "status"]


class TraceError(Exception):
    pass


def default_data_dir():
    env = os.environ.get("CPN_DATA")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(os.path.dirname(root), "shared", "data")


def s_open_input(data, name):
    path = os.path.join(data, name)
    try:
        return open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: {e.strerror} (set CPN_DATA or --data)")


def s_int(row, key, where):
    try:
        return int(row[key])
    except (KeyError, ValueError):
        raise TraceError(f"{where}: column {key!r}: not an integer: {row.get(key)!r}")


def s_num(row, key, where):
    try:
        v = float(row[key])
    except (KeyError, ValueError):
        raise TraceError(f"{where}: column {key!r}: not a number: {row.get(key)!r}")
    if not math.isfinite(v) or v < 0:
        raise TraceError(f"{where}: column {key!r}: out of range: {row[key]!r}")
    return v


def read_nodes(data, gpu_only=False, sample=None):
    out = []
    with s_open_input(data, NODES_FILE) as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            where = f"{NODES_FILE}:{i}"
            milli = s_int(row, "cpu_milli", where)
            if milli % 1000:
                raise TraceError(f"{where}: cpu_milli {milli} is not whole cores")
            gpus = s_int(row, "gpu", where)
            model = row.get("model", "").strip()
            if (gpus > 0) != bool(model):
                raise TraceError(f"{where}: gpu={gpus} but model={model!r}")
            if gpu_only and gpus == 0:
                continue
            out.append({"node_id": row["sn"], "gpu_model": model, "gpu_count": gpus,
                        "cpu_cores": milli // 1000,
                        "memory_mib": s_int(row, "memory_mib", where)})
    if sample is not None:
        if sample < 1 or sample > len(out):
            raise TraceError(f"--sample {sample}: must be 1..{len(out)}")
        out = [out[(i * len(out)) // sample] for i in range(sample)]
    return out


def s_constraint(text):
    seen = []
    for m in text.split("|"):
        m = m.strip()
        if m and m not in seen:
            seen.append(m)
    return "|".join(seen)


def read_jobs(data, gpu_only=False, status=None, offset=0, limit=None):
    rows = []
    with s_open_input(data, JOBS_FILE) as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            if row.get("source") != JOBS_SOURCE:
                continue
            where = f"{JOBS_FILE}:{i}"
            if status and row.get("status") not in status:
                continue
            gpus = s_int(row, "gpu_count", where)
            frac = row.get("gpu_fraction", "")
            if gpus == 0 and frac and s_num(row, "gpu_fraction", where) > 0:
                gpus = 1  # a fraction of a GPU is still a GPU: rounded up
            if gpu_only and gpus == 0:
                continue
            cores = s_num(row, "cpu_cores", where)
            milli = round(cores * 1000)
            gib = s_num(row, "memory_gib", where)
            dur = row.get("duration_s", "")
            if dur:
                dur = str(s_int(row, "duration_s", where))
            rows.append((s_num(row, "submit_time_s", where), i, {
                "request_id": row["request_id"],
                "submit_time_s": row["submit_time_s"],
                "gpu_count": gpus,
                "gpu_fraction": frac,
                "gpu_type_constraint": s_constraint(row.get("gpu_type_constraint", "")),
                "cpu_milli": milli,
                "cpu_cores": max(1, -(-milli // 1000)),
                "memory_gib": row["memory_gib"],
                "memory_mib": round(gib * 1024),
                "duration_s": dur,
                "status": row.get("status", ""),
            }))
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[offset:]
    if limit is not None:
        if len(rows) < limit:
            raise TraceError(f"--limit {limit}: only {len(rows)} jobs match")
        rows = rows[:limit]
    out = []
    for k, (_, _, job) in enumerate(rows):
        job["submit_order"] = k
        out.append(job)
    return out


def write_table(rows, cols, path):
    f = open(path, "w", newline="", encoding="utf-8") if path else sys.stdout
    try:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    finally:
        if path:
            f.close()


def read_table(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def fits(job, node):
    """Could this job run on this empty node? (the checks Slurm and cpn both make)"""
    g = int(job["gpu_count"])
    if g > int(node["gpu_count"]):
        return False
    allowed = job["gpu_type_constraint"]
    if g > 0 and allowed and node["gpu_model"] not in allowed.split("|"):
        return False
    return (int(job["cpu_cores"]) <= int(node["cpu_cores"])
            and int(job["memory_mib"]) <= int(node["memory_mib"]))


def stats(nodes_path, jobs_path):
    nodes, jobs = read_table(nodes_path), read_table(jobs_path)
    supply = {}
    for n in nodes:
        m = n["gpu_model"] or "(none)"
        s = supply.setdefault(m, [0, 0])
        s[0] += 1
        s[1] += int(n["gpu_count"])
    print(f"nodes: {len(nodes)}  gpus: {sum(s[1] for s in supply.values())}  "
          f"cores: {sum(int(n['cpu_cores']) for n in nodes)}")
    for m, (cnt, g) in sorted(supply.items()):
        print(f"  {m:10s} nodes {cnt:5d}  gpus {g:5d}")
    shapes = {}
    for n in nodes:  # nodes with the same shape answer fits() alike
        shapes.setdefault((n["gpu_model"], n["gpu_count"], n["cpu_cores"], n["memory_mib"]), n)
    never = [j for j in jobs if not any(fits(j, n) for n in shapes.values())]
    print(f"jobs: {len(jobs)}  gpus asked: {sum(int(j['gpu_count']) for j in jobs)}  "
          f"cores asked: {sum(int(j['cpu_cores']) for j in jobs)}  "
          f"with a type constraint: {sum(1 for j in jobs if j['gpu_type_constraint'])}  "
          f"fit no node: {len(never)}")


def main(argv):
    ap = argparse.ArgumentParser(description="Reshape the Alibaba GPU 2023 trace into the "
                                 "node and job tables of the benchmarks (see the top of "
                                 "this file for the formats).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pn = sub.add_parser("nodes", help="write the node table")
    pn.add_argument("--sample", type=int, help="keep N nodes, evenly spaced")
    pj = sub.add_parser("jobs", help="write the job table")
    pj.add_argument("--limit", type=int, help="keep the first N jobs by submit time")
    pj.add_argument("--offset", type=int, default=0, help="skip the first K jobs")
    pj.add_argument("--status", help="keep only these pod phases (comma-separated)")
    for p in (pn, pj):
        p.add_argument("--data", default=default_data_dir(), help="data directory")
        p.add_argument("--gpu-only", action="store_true", help="drop rows without GPUs")
        p.add_argument("-o", "--output", help="output file (default: stdout)")
    ps = sub.add_parser("stats", help="supply against demand of two written tables")
    ps.add_argument("--nodes", required=True)
    ps.add_argument("--jobs", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "nodes":
            write_table(read_nodes(a.data, a.gpu_only, a.sample), NODE_COLS, a.output)
        elif a.cmd == "jobs":
            if a.offset < 0 or (a.limit is not None and a.limit < 1):
                raise TraceError("--offset must be >= 0 and --limit >= 1")
            status = set(a.status.split(",")) if a.status else None
            write_table(read_jobs(a.data, a.gpu_only, status, a.offset, a.limit), JOB_COLS,
                        a.output)
        else:
            stats(a.nodes, a.jobs)
    except TraceError as e:
        print(f"trace.py: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"trace.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
