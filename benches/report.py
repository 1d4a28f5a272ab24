#!/usr/bin/env python3
"""Turns criterion's results for benches/workloads.rs into the tables of
benches/README.md and README.md and the W2 plot (benches/w2-writers.svg).

Run from the repository root after the benches:

    cargo bench --bench workloads && python3 benches/report.py

Standard library only. Medians are criterion's median estimate per
iteration; throughput divides the iteration's elements (appends) or bytes by
it. Ratios are of throughput (or of time, for loads and opens), measured in
the same run.
"""

import json
import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
WRITERS = [1, 4, 16, 64, 256]


def load_results():
    results = {}
    for estimates in CRITERION.glob("**/new/estimates.json"):
        bench_dir = estimates.parent
        meta = json.loads((bench_dir / "benchmark.json").read_text())
        median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
        throughput = meta.get("throughput") or {}
        elements = throughput.get("Elements")
        size = throughput.get("Bytes") or throughput.get("BytesDecimal")
        results[meta["full_id"]] = {"median_ns": median_ns, "elements": elements, "bytes": size}
    return results


def per_second(result):
    if result is None:
        return None
    per = result["elements"] or 1
    return per / (result["median_ns"] / 1e9)


def fmt_time(ns):
    if ns is None:
        return "–"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_rate(value):
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k/s"
    return f"{value:.0f}/s"


def machine_facts():
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    fs = run("findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--target", str(ROOT / "target")) or run("stat", "-f", "-c", "%T", str(ROOT))
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu or platform.processor(),
        "memory": memory,
        "file system": fs,
        "kernel": platform.release(),
        "rustc": run("rustc", "--version"),
    }


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(value, target):
    if value is None:
        return "not measured"
    return "met" if value >= target else "**missed**"


def build(results):
    get = results.get
    rate = lambda key: per_second(get(key))
    time = lambda key: get(key)["median_ns"] if get(key) else None
    rows = []

    w1 = "w1_sequential_durable_appends/"
    w2 = "w2_concurrent_durable_appends/"
    targets = []
    annals_w1 = rate(w1 + "annals_sync")
    for name, target in [("raw_preallocated_fdatasync", 0.95), ("raw_append_fdatasync", 1.2), ("redb_immediate", 2.0)]:
        value = ratio(annals_w1, rate(w1 + name))
        targets.append(("W1", f"Annals sync ÷ {name}", target, value))
    annals_w2 = rate(w2 + "annals_sync/64")
    for name, target in [("redb_immediate/64", 50), ("sqlite_full/64", 35), ("channel_group_commit/64", 1.5)]:
        targets.append(("W2", f"Annals sync ÷ {name} (64 writers)", target, ratio(annals_w2, rate(w2 + name))))
    targets.append(("W2", "Annals sync (64 writers) ÷ raw 64-record batch loop", 0.5,
                    ratio(annals_w2, rate(w1 + "raw_preallocated_batch64_fdatasync"))))
    # Async appends at the physical limit (issue 13).
    annals_w1_async = rate(w1 + "annals_sync_async")
    targets.append(("W1 async", "Annals, one awaiting task ÷ raw_preallocated_fdatasync", 0.95,
                    ratio(annals_w1_async, rate(w1 + "raw_preallocated_fdatasync"))))
    targets.append(("W1 async", "Annals, one awaiting task ÷ okaywal", 1.0, ratio(annals_w1_async, rate(w1 + "okaywal"))))
    targets.append(("W2 async", "Annals sync ÷ channel_group_commit/64 (64 writers)", 1.0,
                    ratio(annals_w2, rate(w2 + "channel_group_commit/64"))))
    targets.append(("W2 async", "Annals sync (64 writers) ÷ raw 64-record batch loop", 0.8,
                    ratio(annals_w2, rate(w1 + "raw_preallocated_batch64_fdatasync"))))
    targets.append(("W2 async", "Annals sync ÷ channel_group_commit/256 (256 writers)", 1.0,
                    ratio(rate(w2 + "annals_sync/256"), rate(w2 + "channel_group_commit/256"))))
    targets.append(("W3", "redb time ÷ Annals time (load a 20-row run)", 3.0,
                    ratio(time("w3_load_a_run/redb"), time("w3_load_a_run/annals"))))
    for label in ["100k_rows", "1gib"]:
        for cache in ["warm", "cold"]:
            key = f"w4_open/annals_{label}_{cache}"
            if get(key) and get(key)["bytes"]:
                gbps = get(key)["bytes"] / get(key)["median_ns"]
                targets.append(("W4", f"Annals open, full scan and index rebuild, {label}, {cache} cache (GB/s)", 1.0, gbps))
    memory_path = CRITERION / "annals-index-memory.json"
    memory = json.loads(memory_path.read_text()) if memory_path.exists() else None
    if memory:
        per_record = memory["bytes_per_record_beyond_ids"]
        targets.append(("Memory", "index bytes per record beyond the stream ids (≤ 16)", 16.0, 16.0 / per_record if per_record else None))

    natural = lambda key: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]
    for key in sorted(results, key=natural):
        result = results[key]
        group, _, bench = key.partition("/")
        throughput = per_second(result) if result["elements"] else None
        # W4 states the bytes of Annals' log; only Annals scans them.
        if result["bytes"] and bench.startswith("annals"):
            throughput_text = f"{result['bytes'] / result['median_ns']:.2f} GB/s of log"
        else:
            throughput_text = fmt_rate(throughput) if throughput else "–"
        rows.append((group, bench, fmt_time(result["median_ns"]), throughput_text))
    notes = []
    engine_only = ratio(time("w3_load_a_run/redb_bytes_only"), time("w3_load_a_run/annals_bytes_only"))
    if engine_only and time("w3_load_a_run/annals"):
        decode = time("w3_load_a_run/annals") - time("w3_load_a_run/annals_bytes_only")
        notes.append(
            f"W3 without decoding (the engines' own share, `*_bytes_only`): redb time ÷ Annals time = {engine_only:.2f}; "
            f"decoding the 20 rows into owned values costs {fmt_time(decode)} of Annals' {fmt_time(time('w3_load_a_run/annals'))}."
        )
    wake = time(w1 + "wakeup_round_trip_task")
    blocking, raw = time(w1 + "annals_sync"), time(w1 + "raw_preallocated_fdatasync")
    if wake and blocking and raw:
        notes.append(
            f"A hand-off to another thread and back costs {fmt_time(time(w1 + 'wakeup_round_trip_thread'))} between two "
            f"threads and {fmt_time(wake)} from a tokio task to a thread and back (`wakeup_round_trip_*`, no I/O). An "
            f"awaited append must wake its parked task once after the fdatasync, so one awaiting task cannot beat the "
            f"blocking path plus half that round trip: raw_preallocated_fdatasync ÷ (Annals blocking + "
            f"{fmt_time(wake / 2)}) = {raw / (blocking + wake / 2):.2f} is the nearest W1 async ratio this machine allows."
        )
    return rows, targets, memory, notes


def markdown(rows, targets, memory, notes, facts):
    out = []
    out.append("Measured with `cargo bench --bench workloads && python3 benches/report.py` on:")
    out.append("")
    for key, value in facts.items():
        out.append(f"- {key}: {value}")
    out.append("")
    out.append("| target | required | measured | |")
    out.append("|---|---|---|---|")
    for workload, what, target, value in targets:
        shown = "–" if value is None else (f"{16.0 / value:.1f} bytes" if workload == "Memory" else f"{value:.2f}")
        required = "≤ 16 bytes" if workload == "Memory" else f"≥ {target:g}"
        out.append(f"| {workload}: {what} | {required} | {shown} | {verdict(value, 1.0 if workload == 'Memory' else target)} |")
    for note in notes:
        out.append("")
        out.append(note)
    out.append("")
    out.append("| workload | system | median per iteration | throughput |")
    out.append("|---|---|---|---|")
    for group, bench, median, throughput in rows:
        out.append(f"| {group} | {bench} | {median} | {throughput} |")
    if memory:
        out.append("")
        out.append(
            f"Index memory for W3's data ({memory['entries']} records in {memory['streams']} streams): "
            f"{memory['entry_bytes']} bytes of positions, {memory['stream_overhead_bytes']} of per-stream state, "
            f"{memory['checkpoint_bytes']} of LSN checkpoints, plus {memory['stream_id_bytes']} of stream ids: "
            f"{memory['bytes_per_record_beyond_ids']:.2f} bytes per record beyond the ids."
        )
    out.append("")
    out.append("![W2: durable appends per second against concurrent writers](w2-writers.svg)")
    return "\n".join(out)


def svg_plot(results):
    series = {
        "Annals (sync)": ("annals_sync", "#1b6ac9"),
        "channel + writer thread": ("channel_group_commit", "#7a7a7a"),
        "okaywal": ("okaywal", "#8e44ad"),
        "SQLite FULL": ("sqlite_full", "#2e9b5f"),
        "redb Immediate": ("redb_immediate", "#c0392b"),
    }
    width, height, left, right, top, bottom = 720, 380, 100, 200, 20, 50
    import math

    points = {}
    for label, (name, _) in series.items():
        points[label] = [
            (w, per_second(results.get(f"w2_concurrent_durable_appends/{name}/{w}"))) for w in WRITERS
        ]
    values = [v for pts in points.values() for _, v in pts if v]
    if not values:
        return None
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    x = lambda w: left + (WRITERS.index(w) / (len(WRITERS) - 1)) * (width - left - right)
    y = lambda v: top + (1 - (math.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">']
    out.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    decade = low
    while decade <= high:
        out.append(f'<line x1="{left}" y1="{y(decade):.1f}" x2="{width - right}" y2="{y(decade):.1f}" stroke="#ddd"/>')
        tick = f"{decade / 1e6:g} M/s" if decade >= 1e6 else (f"{decade / 1e3:g} k/s" if decade >= 1e3 else f"{decade:g}/s")
        out.append(f'<text x="{left - 6}" y="{y(decade) + 4:.1f}" text-anchor="end">{tick}</text>')
        decade *= 10
    for w in WRITERS:
        out.append(f'<text x="{x(w):.1f}" y="{height - bottom + 18}" text-anchor="middle">{w}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 12}" text-anchor="middle">concurrent writers</text>')
    out.append(f'<text x="18" y="{(top + height - bottom) / 2:.1f}" transform="rotate(-90 18 {(top + height - bottom) / 2:.1f})" text-anchor="middle">durable appends per second</text>')
    for i, (label, (_, colour)) in enumerate(series.items()):
        pts = [(x(w), y(v)) for w, v in points[label] if v]
        if pts:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for px, py in pts:
                out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        ly = top + 16 + i * 18
        out.append(f'<line x1="{width - right + 12}" y1="{ly - 4}" x2="{width - right + 32}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 38}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def replace_section(path, text):
    content = path.read_text()
    start, end = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
    if start not in content:
        return
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main():
    results = load_results()
    if not results:
        raise SystemExit("no criterion results: run `cargo bench --bench workloads` first")
    rows, targets, memory, notes = build(results)
    text = markdown(rows, targets, memory, notes, machine_facts())
    plot = svg_plot(results)
    if plot:
        (ROOT / "benches" / "w2-writers.svg").write_text(plot + "\n")
    replace_section(ROOT / "benches" / "README.md", text)
    replace_section(ROOT / "README.md", text.replace("(w2-writers.svg)", "(benches/w2-writers.svg)"))
    print(text)


if __name__ == "__main__":
    main()
