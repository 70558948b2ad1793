"""A bounded load test of `hybridpqa serve` on loopback, against the same searches in-process.

Starts `hybridpqa serve --index=DIR` on 127.0.0.1, then CLIENTS concurrent clients post /search for
SECONDS, each cycling through the queries; reports queries/s, latency p50 / p99, errors, and the
server's resident memory before and after. The baseline, in the same run: the same queries through
`SearchIndex.search` in this process, one at a time (encoding included in both). Served searches are
timed as ids, scores and texts (`detail: false`, what the baseline returns), then with the page's
score split, matching terms and shaded texts, each at every count of --clients. With --soak=S: one
count of clients posts detailed searches for S seconds while the server's resident memory is sampled
every second (start, after --warmup seconds, end, and the slope after warm-up in MB/min).

    python scripts/bench_serve.py --index=output/scifact-index --queries=data/raw/scifact/queries.jsonl \\
        --clients=1,4,16 --seconds=30
    python scripts/bench_serve.py --index=output/scifact-index --queries=data/raw/scifact/queries.jsonl \\
        --clients=8 --soak=150 --warmup=60
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from HybridPQA.api import SearchIndex
from HybridPQA.data.corpus import read_texts
from HybridPQA.serving.process import running_server


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(base: str, queries: list[str], clients: int, seconds: float, k: int, detail: bool = False,
         scorer: str | None = None) -> dict:
    latencies, errors, stop = [], [], time.perf_counter() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            i = n
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    answer = http.post("/search", json={"query": queries[i % len(queries)], "k": k,
                                                           "detail": detail, "scorer": scorer})
                    ok = answer.status_code == 200 and len(answer.json()["hits"]) == k
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors.append(i)
                i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = 1000 * np.array(latencies)
    return {"clients": clients, "detail": detail, "requests": len(latencies), "qps": len(latencies) / elapsed, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors)}


def soak(base: str, pid: int, queries: list[str], clients: int, seconds: float, warmup: float, k: int,
         detail: bool) -> dict:
    """`clients` posting /search for `seconds` while the server's resident memory is sampled every second:
    MB at the start, after `warmup` seconds and at the end, and the slope after warm-up (MB/min, least squares)."""
    samples, done = [], threading.Event()

    def sample() -> None:
        started = time.perf_counter()
        while not done.wait(1.0):
            samples.append((time.perf_counter() - started, rss_mb(pid)))

    start_mb, sampler = rss_mb(pid), threading.Thread(target=sample)
    sampler.start()
    result = load(base, queries, clients, seconds, k, detail=detail)
    done.set()
    sampler.join()
    t, mb = (np.array(v) for v in zip(*samples))
    after = t >= warmup
    slope = float(np.polyfit(t[after] / 60, mb[after], 1)[0]) if after.sum() > 2 else float("nan")
    return {**result, "rss_mb_start": start_mb, "rss_mb_after_warmup": float(mb[after][0]), "rss_mb_end": float(mb[-1]),
            "rss_mb_per_min_after_warmup": slope, "samples": [[round(a, 1), round(b, 1)] for a, b in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="a `hybridpqa index` folder")
    parser.add_argument("--queries", required=True)
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts (a soak takes the first)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--scorer", help="hybrid, dense or sparse (default: the index's)")
    parser.add_argument("--output", help="a JSON file for the numbers")
    parser.add_argument("--soak", type=float, default=0, help="instead: a memory soak of this many seconds at --clients "
                        "(with detail), the server's memory sampled every second")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of the soak before its slope is measured")
    args = parser.parse_args()
    queries = list(read_texts(args.queries, "query").values())
    if args.soak:
        with running_server([args.index]) as (base, server):
            report = soak(base, server.pid, queries, int(args.clients.split(",")[0]), args.soak, args.warmup, args.k, True)
        print(f"soak, {args.clients.split(',')[0]} clients, {args.soak:.0f} s with detail: {report['qps']:.1f} q/s; server memory "
              f"{report['rss_mb_start']:.0f} MB at start, {report['rss_mb_after_warmup']:.0f} MB after "
              f"{args.warmup:.0f} s, {report['rss_mb_end']:.0f} MB at the end; "
              f"{report['rss_mb_per_min_after_warmup']:+.1f} MB/min after warm-up; {report['errors']} errors")
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=2))
        return

    index = SearchIndex.load(args.index)  # the baseline: the same searches in this process, one at a time
    index.search(queries[0], k=args.k, scorer=args.scorer)
    times, stop, i = [], time.perf_counter() + min(args.seconds, 15), 0
    while time.perf_counter() < stop:
        started = time.perf_counter()
        index.search(queries[i % len(queries)], k=args.k, scorer=args.scorer)
        times.append(time.perf_counter() - started)
        i += 1
    ms = 1000 * np.array(times)
    in_process = {"qps": len(times) / sum(times), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}
    index.close()
    del index

    counts = [int(c) for c in args.clients.split(",")]
    with running_server([args.index]) as (base, server):
        before = rss_mb(server.pid)
        load(base, queries, 1, 3, args.k, scorer=args.scorer)  # warm-up
        served = [load(base, queries, c, min(args.seconds, 15) if c == 1 else args.seconds, args.k, detail=detail,
                       scorer=args.scorer) for detail in (False, True) for c in counts]
        after = rss_mb(server.pid)
    report = {"in_process": in_process, "served": served, "server_rss_mb": [before, after]}
    print(json.dumps(report, indent=2))
    print(f"\nin-process, one at a time: {in_process['qps']:.1f} q/s, p50 {in_process['p50_ms']:.1f} ms, "
          f"p99 {in_process['p99_ms']:.1f} ms")
    plain = {r["clients"]: r["qps"] for r in served if not r["detail"]}
    for r in served:
        name = "with the score split, terms and shaded text" if r["detail"] else "ids, scores, texts"
        print(f"served, {r['clients']:>2} clients, {name}: {r['qps']:.1f} q/s ({r['qps'] / in_process['qps']:.2f}x "
              f"in-process, {r['qps'] / plain[r['clients']]:.2f}x plain served), p50 {r['p50_ms']:.1f} ms, "
              f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors of {r['requests']}")
    print(f"server memory: {before:.0f} MB before, {after:.0f} MB after")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
