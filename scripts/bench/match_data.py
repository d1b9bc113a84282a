#!/usr/bin/env python3
"""match_data.py - turn the public capacity catalogs and job traces into the package shapes and
requests that the matcher benchmark (scripts/bench/match) reads. Python 3, standard library.

It only reshapes rows: every shape comes from one catalog row and every request from one trace
row, with the conversions below. Nothing is invented, except where a column does not exist in
a source; those cases are listed under "Gaps" and use fixed, documented rules.

Usage:  match_data.py [--data DIR] -o OUTDIR
  DIR defaults to $CPN_DATA, else <repo>/../shared/data (see its README.md).
  Writes OUTDIR/shapes.tsv, OUTDIR/requests.tsv, OUTDIR/equiv.tsv and prints a summary.
  Deterministic: same input, same bytes.

shapes.tsv, one catalog row per line (tab-separated, header first):
  source name vendor model accel_count cores mem_mib storage_class storage_gb egress_gbps
  region price_milli
  aws_gpu_instances_by_region.csv    (1,162 rows) instance_type; vendor and model split from
      gpu_model at the first space ("NVIDIA T4" -> nvidia, T4; further spaces become '-',
      "Qualcomm AI 100" -> qualcomm, AI-100); accel_count = gpu_count;
      cores = vcpus; mem = memory_gib; storage from storage_raw ("8 x 3.84 TB NVMe SSD" ->
      nvme 30720 GB, "900 GB (2 x 450 GB SSD)" -> ssd 900 GB, "EBS Only" -> none);
      egress = network_gbps_max (empty -> 0); region; price = price_ondemand_usd_hr * 1000.
      Dropped: rows with no price (5 types without regions) and rows with a fractional
      gpu_count (g6f: a share of one GPU; packages sell whole accelerators).
  gcp_compute_instances_by_region.csv (17,720 rows) machine_type; vendor nvidia when gpu_model
      is set, model = gpu_model; accel_count = gpu_count; cores = vcpus; mem = memory_gb (GCP's
      "GB" are GiB); storage = local_ssd_gb as class ssd; region; price = price_hour_usd * 1000.
      Dropped: rows with no price, fractional GPUs (g4: a share of one RTX 6000), and
      shared-core types (vcpus < 1: packages sell whole
      cores).
  alibaba_gpu_v2023_nodes.csv        (1,523 rows) sn; model; accel_count = gpu; cores =
      cpu_milli / 1000; mem = memory_mib; region "alibaba-openb" (the trace's cluster).
  alibaba_spot_gpu_v2026_nodes.csv   (4,278 rows) node_name; model = gpu_model; accel_count =
      gpu_capacity_num; cores = cpu_num; mem 0 (the file has no memory column, so requests
      that ask for memory pass these by); region "alibaba-spot" (the trace's cluster).

requests.tsv, one trace row per line, in file order:
  id gpu_count model cores mem_mib
  job_requests_normalized.csv (32,023 rows: Alibaba GPU 2023 pods and 2025 DLRM instances);
  gpu_count as given (a fraction of one GPU is already counted as 1 GPU there); model =
  gpu_type_constraint with duplicates removed ("T4", or "V100M16|V100M32" for "any of
  these"); cores = ceil(cpu_cores); mem = ceil(memory_gib * 1024) MiB. Not mapped: disk_gib
  (the catalogs describe local disks only, not attached volumes) and rdma_bw_pct.

equiv.tsv: model <tab> accepted models (comma-separated), one line per distinct "A|B|C"
  constraint of the trace: the name "A|B|C" (which no package carries) accepts A, B and C.
  That is how a broker policy says "any of these" exactly (9 rules; a policy holds 32).

Gaps (columns no source has):
  - Prices of Alibaba nodes: price = gpus * G + cores * C, with G the median on-demand price
    per GPU-hour over all AWS and GCP GPU rows and C the median price per vCPU-hour over GCP
    rows without GPUs (both printed in the summary).
  - Vendors of Alibaba models: nvidia for T4, P100, V100M16, V100M32, A10, A100-*, A800-*,
    H800; "undisclosed" for G1, G2, G3, GPU-series-1, GPU-series-2 (the trace hides them).
  - Accelerator memory and TFLOPS are not written: the AWS column mixes per-GPU and
    per-instance figures, the others have none, and no trace request asks by capability.
    The protocol requires both above 0, so bench_match.c advertises 1 GiB and 1 TFLOPS per
    accelerator (the smallest valid values; no request here looks at them).
"""

import argparse
import csv
import math
import os
import re
import statistics
import sys

NVIDIA_ALIBABA = {"T4", "P100", "V100M16", "V100M32", "A10", "A100-SXM4-80GB",
                  "A800-SXM4-80GB", "H800"}


def default_data_dir():
    env = os.environ.get("CPN_DATA")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(os.path.dirname(root), "shared", "data")


def rows(data, name):
    path = os.path.join(data, name)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        sys.exit("match_data.py: cannot read %s: %s (set CPN_DATA to the data directory)"
                 % (path, e.strerror))


def clean(s):
    return re.sub(r"[\t\r\n]", " ", s).strip()


def aws_storage(raw):
    """'8 x 3.84 TB NVMe SSD' -> ('nvme', 30720); '900 GB (2 x 450 GB SSD)' -> ('ssd', 900)."""
    raw = raw.replace("\u00d7", "x")
    if not raw or raw.startswith("EBS"):
        return "", 0
    cls = "nvme" if "NVMe" in raw else ("hdd" if "HDD" in raw else "ssd")
    m = re.match(r"\s*(\d+)\s*x\s*([\d.]+)\s*(GB|TB)", raw)
    if m:
        n, size, unit = int(m.group(1)), float(m.group(2)), m.group(3)
    else:
        m = re.match(r"\s*([\d.]+)\s*(GB|TB)", raw)
        if not m:
            return "", 0
        n, size, unit = 1, float(m.group(1)), m.group(2)
    gb = n * size * (1024 if unit == "TB" else 1)
    return cls, int(round(gb))


def milli(usd):
    return int(round(float(usd) * 1000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    shapes, dropped = [], {}
    per_gpu, per_vcpu = [], []

    for r in rows(a.data, "aws_gpu_instances_by_region.csv"):
        if not r["price_ondemand_usd_hr"] or not r["region"]:
            dropped["aws: no price"] = dropped.get("aws: no price", 0) + 1
            continue
        cnt = float(r["gpu_count"] or 0)
        if cnt != int(cnt):
            dropped["aws: fractional GPU"] = dropped.get("aws: fractional GPU", 0) + 1
            continue
        vendor, _, model = clean(r["gpu_model"]).partition(" ")
        model = model.replace(" ", "-")  # names travel without spaces ("AI 100" -> "AI-100")
        cls, gb = aws_storage(r["storage_raw"])
        price = milli(r["price_ondemand_usd_hr"])
        if cnt > 0:
            per_gpu.append(price / cnt)
        shapes.append(["aws", r["instance_type"], vendor.lower(), model, int(cnt),
                       int(float(r["vcpus"])), int(math.ceil(float(r["memory_gib"]) * 1024)),
                       cls, gb, int(float(r["network_gbps_max"] or 0)), r["region"], price])

    for r in rows(a.data, "gcp_compute_instances_by_region.csv"):
        if not r["price_hour_usd"]:
            dropped["gcp: no price"] = dropped.get("gcp: no price", 0) + 1
            continue
        fcnt = float(r["gpu_count"] or 0)
        if fcnt != int(fcnt):
            dropped["gcp: fractional GPU"] = dropped.get("gcp: fractional GPU", 0) + 1
            continue
        cnt = int(fcnt)
        model = clean(r["gpu_model"])
        price = milli(r["price_hour_usd"])
        if float(r["vcpus"]) < 1:
            dropped["gcp: shared core"] = dropped.get("gcp: shared core", 0) + 1
            continue
        vcpus = int(float(r["vcpus"]))
        if cnt > 0:
            per_gpu.append(price / cnt)
        elif vcpus > 0:
            per_vcpu.append(price / vcpus)
        ssd = int(float(r["local_ssd_gb"] or 0))
        shapes.append(["gcp", r["machine_type"], "nvidia" if model else "", model, cnt, vcpus,
                       int(math.ceil(float(r["memory_gb"]) * 1024)), "ssd" if ssd else "", ssd,
                       0, r["region"], price])

    g = statistics.median(per_gpu)
    c = statistics.median(per_vcpu)

    def ali_vendor(m):
        return "" if not m else ("nvidia" if m in NVIDIA_ALIBABA else "undisclosed")

    for r in rows(a.data, "alibaba_gpu_v2023_nodes.csv"):
        cnt, cores = int(r["gpu"]), int(r["cpu_milli"]) // 1000
        shapes.append(["alibaba2023", r["sn"], ali_vendor(r["model"]), r["model"], cnt, cores,
                       int(r["memory_mib"]), "", 0, 0, "alibaba-openb",
                       int(round(cnt * g + cores * c))])

    for r in rows(a.data, "alibaba_spot_gpu_v2026_nodes.csv"):
        cnt, cores = int(r["gpu_capacity_num"]), int(r["cpu_num"])
        # The spot node file has no memory column: 0 (requests asking for memory skip these).
        shapes.append(["alibaba2026spot", "spot-" + r["node_name"], ali_vendor(r["gpu_model"]),
                       r["gpu_model"], cnt, cores, 0, "", 0, 0, "alibaba-spot",
                       int(round(cnt * g + cores * c))])

    reqs, equiv = [], {}
    for r in rows(a.data, "job_requests_normalized.csv"):
        models = []
        for m in clean(r["gpu_type_constraint"]).split("|"):
            if m and m not in models:
                models.append(m)
        name = "|".join(models)
        if len(models) > 1:
            equiv[name] = models
        reqs.append([r["request_id"], int(float(r["gpu_count"] or 0)), name,
                     int(math.ceil(float(r["cpu_cores"] or 0))),
                     int(math.ceil(float(r["memory_gib"] or 0) * 1024))])

    with open(os.path.join(a.out, "shapes.tsv"), "w", encoding="utf-8") as f:
        f.write("source\tname\tvendor\tmodel\taccel_count\tcores\tmem_mib\tstorage_class\t"
                "storage_gb\tegress_gbps\tregion\tprice_milli\n")
        for s in shapes:
            f.write("\t".join(str(x) for x in s) + "\n")
    with open(os.path.join(a.out, "requests.tsv"), "w", encoding="utf-8") as f:
        f.write("id\tgpu_count\tmodel\tcores\tmem_mib\n")
        for q in reqs:
            f.write("\t".join(str(x) for x in q) + "\n")
    with open(os.path.join(a.out, "equiv.tsv"), "w", encoding="utf-8") as f:
        for m in sorted(equiv):
            f.write("%s\t%s\n" % (m, ",".join(equiv[m])))

    by = {}
    for s in shapes:
        by[s[0]] = by.get(s[0], 0) + 1
    distinct = len({tuple(s[2:11]) for s in shapes})
    print("shapes: %d rows (%s); %d distinct (hardware, region); dropped: %s"
          % (len(shapes), ", ".join("%s %d" % kv for kv in sorted(by.items())), distinct,
             ", ".join("%s %d" % kv for kv in sorted(dropped.items())) or "none"))
    print("alibaba node prices: %.3f per GPU-hour (median of %d cloud GPU rows), %.4f per "
          "vCPU-hour (median of %d GCP CPU rows)" % (g / 1000, len(per_gpu), c / 1000,
                                                      len(per_vcpu)))
    print("requests: %d rows; %d name a model; equivalence rules: %d"
          % (len(reqs), sum(1 for q in reqs if q[2]), len(equiv)))


if __name__ == "__main__":
    main()
