"""Results of scripts/bench.sh: one JSON file, one key per measurement.

    results.py set FILE KEY JSON    record one measurement
    results.py report FILE          print the figures table (markdown) with
                                    the issue's targets and jobfleet/Sidekiq ratios
"""

import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def cmd_set(path, key, value):
    data = load(path)
    data[key] = json.loads(value)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def evalsha(r):
    """EVALSHA calls and usec per call during one phase."""
    c = r.get("commandstats", {}).get("evalsha")
    if not c or not c["calls"]:
        return None
    return c["calls"], c["usec"] / c["calls"], c["usec"]


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v < 100:
        return f"{v:.2f}{unit}"
    return f"{v:,.0f}{unit}"


def cpu(r, name):
    c = r.get("cpu", {}).get(name)
    return None if c is None else c["util"]


def workers_cpu(r):
    us = [v["util"] for k, v in r.get("cpu", {}).items() if k.startswith("worker")]
    return sum(us) if us else None


def report(path):
    d = load(path)
    m = d.get("machine", {})
    rows = []

    def row(what, value, target="", note=""):
        rows.append((what, value, target, note))

    jobs = m.get("jobs")
    if "enqueue" in d:
        e = d["enqueue"]
        es = evalsha(e)
        row("enqueue, jobs/s (submit --stdin, no workers)", fmt(e.get("enqueue_per_s")), ">= 200,000",
            f"Redis CPU {fmt(cpu(e, 'redis'))}, submit CPU {fmt(cpu(e, 'command'))}"
            + (f"; {es[0]:,} EVALSHA, {es[2] / jobs:.2f} us Redis per job" if es else ""))
    if "e2e" in d:
        e = d["e2e"]
        es = evalsha(e)
        row(f"end-to-end, jobs/s ({m.get('workers')} workers x c{m.get('concurrency')})",
            fmt(e.get("e2e_per_s")), ">= 50,000",
            f"Redis CPU {fmt(cpu(e, 'redis'))}, workers CPU {fmt(workers_cpu(e))}, submit {fmt(e.get('command_s'))} s"
            + (f"; {es[0]:,} EVALSHA, {es[2] / jobs:.2f} us Redis per job" if es else ""))
    for n in (1, 2, 4, 8):
        k = f"scaling_{n}"
        if k in d:
            e = d[k]
            row(f"end-to-end, {n} worker process(es), jobs/s", fmt(e.get("e2e_per_s")), "",
                f"Redis CPU {fmt(cpu(e, 'redis'))}, workers CPU {fmt(workers_cpu(e))}")
    if "latency" in d:
        t = d["latency"]["total"]
        row("latency p50, ms (submit -> completion event)", fmt(t["p50_ms"]), "<= 0.5")
        row("latency p99, ms", fmt(t["p99_ms"]), "<= 2", f"max {fmt(t['max_ms'])} ms, "
            f"submit call alone p50 {fmt(d['latency']['submit_call']['p50_ms'])} ms")
    if "bullmq_latency" in d:
        b = d["bullmq_latency"]
        row(f"BullMQ {b.get('bullmq')} latency p50 / p99, ms (reference)", f"{fmt(b['p50_ms'])} / {fmt(b['p99_ms'])}", "",
            "same probe: add, wait for the completed event, one at a time")
    if "memory" in d:
        row("Redis bytes per pending no-op job", fmt(d["memory"]["bytes_per_job"]), "<= 170",
            f"one job HASH: MEMORY USAGE {d['memory'].get('job_record_memory_usage')} bytes")
    if "retained" in d:
        row("Redis bytes per job left after a run (retention)", fmt(d["retained"]["bytes_per_job"]), "",
            "completed records kept for --keep-completed (default 1h)")
    backlog = sorted((int(k[8:]), v) for k, v in d.items() if k.startswith("backlog_"))
    for b, e in backlog:
        tenths = e.get("per_tenth_per_s") or []
        row(f"drain of a {b:,}-job backlog, jobs/s (steady)", fmt(e.get("steady_per_s")), "flat",
            "per tenth: " + " ".join(fmt(x) for x in tenths))
    if "sidekiq_enqueue" in d:
        s = d["sidekiq_enqueue"]
        row("Sidekiq enqueue, jobs/s (push_bulk x1000)", fmt(s.get("per_s")), "")
        if "enqueue" in d:
            row("  jobfleet / Sidekiq, enqueue", f"{d['enqueue']['enqueue_per_s'] / s['per_s']:.2f}x", "")
    if "sidekiq_memory" in d:
        row("Sidekiq bytes per pending no-op job", fmt(d["sidekiq_memory"]["bytes_per_job"]), "",
            "the whole job JSON in the queue LIST")
    if "sidekiq_drain" in d:
        s = d["sidekiq_drain"]
        row("Sidekiq drain, jobs/s (2 x sidekiq -c 10, steady)", fmt(s.get("steady_per_s")), "",
            f"processed {s.get('processed')}, failed {s.get('failed')}")
        if jobs and f"backlog_{jobs}" in d:
            j = d[f"backlog_{jobs}"]["steady_per_s"]
            row("  jobfleet / Sidekiq, drain", f"{j / s['steady_per_s']:.2f}x", "")
    if "sidekiq_e2e" in d:
        s = d["sidekiq_e2e"]
        row("Sidekiq end-to-end, jobs/s (push_bulk into 2 idle processes)", fmt(s.get("per_s")), "",
            f"processed {s.get('processed')}, failed {s.get('failed')}")
        if "e2e" in d:
            row("  jobfleet / Sidekiq, end-to-end", f"{d['e2e']['e2e_per_s'] / s['per_s']:.2f}x", ">= 3x")
    print(f"\nmachine: nproc {m.get('nproc')}, redis-server {m.get('redis')}, N = {jobs:,} jobs\n")
    print("| measurement | value | target | notes |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "set":
        cmd_set(*sys.argv[2:5])
    elif sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
