"""Reads fio's JSON reports for the benchmark scripts' tables."""
import json
import statistics


def stats(path, rw):
    """MB/s, IOPS and p99 completion latency (µs) of one fio run."""
    text = open(path).read()  # fio may print notes before the JSON
    job = json.loads(text[text.index("{"):])["jobs"][0]
    side = job["write" if "write" in rw else "read"]
    p99 = side["clat_ns"].get("percentile", {}).get("99.000000", 0) / 1000
    return side["bw_bytes"] / 1e6, side["iops"], p99


def median(runs):
    """The median of each figure over several runs' stats."""
    return tuple(statistics.median(r[i] for r in runs) for i in range(3))
