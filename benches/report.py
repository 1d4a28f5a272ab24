#!/usr/bin/env python3
"""Turns criterion's results for benches/workloads.rs into the tables of
benches/README.md and README.md and the W2 plot (benches/w2-writers.svg),
and those of benches/lifecycle.rs into their "Storage lifecycle" tables.

Run from the repository root after the benches:

    cargo bench --bench workloads && python3 benches/report.py
    cargo bench --bench lifecycle && python3 benches/report.py

Each section is rewritten only when its bench has results.

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
CRITERION = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "criterion"
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


def is_workload(group):
    return re.match(r"w\d_", group) is not None


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
    targets.append(("W1 async", "Annals, one awaiting task ÷ the same hand-off with nothing of Annals (channel_group_commit_async)",
                    1.0, ratio(annals_w1_async, rate(w1 + "channel_group_commit_async"))))
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
        if not is_workload(group):
            continue
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
    async_in_place, async_writer = time(w1 + "annals_sync_async"), time(w1 + "annals_sync_async_writer_thread")
    if wake and blocking and raw and async_in_place and async_writer:
        notes.append(
            f"A hand-off to another thread and back costs {fmt_time(time(w1 + 'wakeup_round_trip_thread'))} between two "
            f"threads and {fmt_time(wake)} from a tokio task to a thread and back (`wakeup_round_trip_*`, no I/O). One "
            f"awaiting task's append, committed in place on its worker (`block_in_place`), pays none: "
            f"{fmt_time(async_in_place)} against the blocking path's {fmt_time(blocking)}; handed to the writer thread "
            f"and woken after the fdatasync (`annals_sync_async_writer_thread`, `awaited_commits_in_place: false`) it "
            f"took {fmt_time(async_writer)}, raw_preallocated_fdatasync ÷ that = {raw / async_writer:.2f}."
        )
    channel_w1 = time(w1 + "channel_group_commit_async")
    if channel_w1 and raw:
        notes.append(
            f"One task handing each record to a writer thread that writes, fdatasyncs and wakes it, with nothing of "
            f"Annals (`channel_group_commit_async`), reaches raw_preallocated_fdatasync ÷ channel = "
            f"{raw / channel_w1:.2f}: the floor of any awaited append whose fsync runs on another thread, measured in "
            f"this run."
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


# ------------------------------------------------------------------ lifecycle


def load_lifecycle_figures():
    """What benches/lifecycle.rs writes beside criterion's results, by group;
    a smoke run's figures are left out."""
    figures = {}
    for path in CRITERION.glob("annals-lifecycle-*.json"):
        if path.stem.endswith("-smoke"):
            continue
        group = path.stem.removeprefix("annals-lifecycle-")
        data = json.loads(path.read_text())
        smoke = any(item.get("smoke") for item in data) if isinstance(data, list) else data.get("smoke")
        if not smoke:
            figures[group] = data
    return figures


def fmt_bytes(value):
    if value is None:
        return "–"
    for unit, size in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]:
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def check(value, op, target):
    if op is None:
        return "no target" if value is not None else "not measurable"
    if value is None:
        return "not measured"
    met = value >= target if op == "≥" else value <= target
    return "met" if met else "**missed**"


def lifecycle_targets(results, figures):
    """(what, op, target, value, shown) for every target of issue 11's "Show it"."""
    get = results.get
    time = lambda key: get(key)["median_ns"] if get(key) else None
    rate = lambda key: per_second(get(key))
    out = []
    churn = {m["background_compaction"]: m for m in figures.get("churn", [])}
    on, off = churn.get(True), churn.get(False)
    value = ratio(rate("lifecycle_churn/compaction_on"), rate("lifecycle_churn/compaction_off"))
    out.append(("Churn: appends per second, background compaction on ÷ off", "≥", 0.9, value, None))
    if on and off:
        value = ratio(on["appends"]["p99_us"], off["appends"]["p99_us"])
        out.append(("Churn: p99 append latency, on ÷ off", "≤", 1.5, value, None))
        quiescent = on["quiescent"]
        value = ratio(quiescent["file_bytes"], on["bound_bytes"])
        shown = f"{value:.2f} ({fmt_bytes(quiescent['file_bytes'])} of {fmt_bytes(on['bound_bytes'])})"
        out.append(("Churn: disk at quiescence ÷ (2 × live + 3 segments), compaction on", "≤", 1.0, value, shown))
        value = ratio(on["record_bytes_written"], quiescent["live_bytes"])
        out.append(("Churn: bytes written ÷ live bytes (the workload's size)", "≥", 10, value, None))
    for label in ["100k_rows", "1gib"]:
        for state in ["clean", "crash"]:
            redb = time(f"lifecycle_open/redb_{label}_{state}")
            for handle in ["log", "reader"]:
                value = ratio(time(f"lifecycle_open/annals_{handle}_{label}_{state}"), redb)
                what = "Log::open" if handle == "log" else "LogReader::open"
                if value is None:
                    continue
                if state == "clean":
                    out.append((f"Open {label} after a clean close: Annals {what} ÷ redb", "≤", 2.0, value, None))
                else:
                    # The target after a crash is the index image plus at
                    # most one segment's scan; with no image yet, redb's repair is
                    # shown for scale.
                    out.append((f"Open {label} after a crash: Annals {what} ÷ redb (repairing)", None, None, value, None))
        value = ratio(time(f"lifecycle_open/annals_log_{label}_clean_open_alone"),
                      time(f"lifecycle_open/redb_{label}_clean_open_alone"))
        if value is not None:
            out.append((f"Open {label} after a clean close, the open alone (no first read): Annals Log::open ÷ redb",
                        None, None, value, None))
    growth = lambda system: ratio(time(f"lifecycle_open/{system}_1gib_clean"), time(f"lifecycle_open/{system}_100k_rows_clean"))
    annals, redb = growth("annals_log"), growth("redb")
    if annals and redb:
        out.append(("Open after a clean close, 1 GiB ÷ 100k rows: Annals Log::open (flat: about 1)", None, None, annals,
                    f"{annals:.1f} (redb {redb:.1f})"))
    crashed, clean = time("lifecycle_open/annals_log_1gib_crash"), time("lifecycle_open/annals_log_1gib_clean")
    if crashed and clean:
        out.append(("Open 1 GiB after a crash ÷ after a clean close: Annals Log::open (the image plus the tail's scan and rewrite)",
                    None, None, crashed / clean, f"{crashed / clean:.1f} ({crashed / 1e6:.1f} ms)"))
    key = "lifecycle_compaction/annals_compact_warm"
    if get(key) and get(key)["bytes"]:
        value = get(key)["bytes"] / get(key)["median_ns"]
        out.append(("Compaction: Log::compact() on a mostly dead log, GB of input per second", "≥", 1.0, value, None))
    value = time("lifecycle_small_log/annals")
    if value is not None:
        out.append(("Small log: create and acknowledge the first Sync append (ms)", "≤", 50, value / 1e6, None))
    disks = {d["system"]: d for d in figures.get("small_log", {}).get("disk_after_close", [])}
    if "annals" in disks:
        value = disks["annals"]["file_bytes"] / (1 << 20)
        out.append(("Small log: disk after close (MiB)", "≤", 8, value, None))
    return out


def table_head(*columns):
    """The first two lines of a markdown table with these columns."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def targets_table(targets):
    out = table_head("target", "required", "measured", "")
    for what, op, target, value, shown in targets:
        shown = shown or ("–" if value is None else f"{value:.2f}")
        required = "–" if op is None else f"{op} {target:g}"
        out.append(f"| {what} | {required} | {shown} | {check(value, op, target)} |")
    return out


def lifecycle_markdown(results, figures, facts):
    get = results.get
    time = lambda key: get(key)["median_ns"] if get(key) else None
    out = ["Measured with `cargo bench --bench lifecycle && python3 benches/report.py` on:", ""]
    for key, value in facts.items():
        out.append(f"- {key}: {value}")
    loads = [(group, item) for group, data in sorted(figures.items()) for item in (data if isinstance(data, list) else [data])]
    for group, item in loads:
        what = group + (f" {item['label']}" if "label" in item else "")
        if "background_compaction" in item:
            what += " on" if item["background_compaction"] else " off"
        out.append(f"- load average (1, 5, 15 min), {what}: {item['load_before']} before, {item['load_after']} after")
    out.append("")
    out.extend(targets_table(lifecycle_targets(results, figures)))

    churn = figures.get("churn", [])
    if churn:
        out += ["", "Churn (1,000 workflows, one task each, durability `Sync`, "
                f"{fmt_bytes(churn[0]['segment_bytes'])} segments, a snapshot-and-prune every "
                f"{churn[0]['snapshot_every']} steps; latencies of every append of the run):", ""]
        out += table_head("background compaction", "appends/s", "p50", "p99", "p99.9", "max", "written", "live",
                          "disk at quiescence", "bound", "compactions", "settled in")
        for m in churn:
            mode = "on" if m["background_compaction"] else "off"
            a, q = m["appends"], m["quiescent"]
            rate = fmt_rate(per_second(get(f"lifecycle_churn/compaction_{mode}")))
            settled = f"{m['quiescence_wait_ms'] / 1000:.1f} s" if m["settled"] else "did not settle"
            if not m["background_compaction"]:
                settled = "–"
            out.append(
                f"| {mode} | {rate} | {a['p50_us'] / 1000:.2f} ms | {a['p99_us'] / 1000:.2f} ms | "
                f"{a['p999_us'] / 1000:.2f} ms | {a['max_us'] / 1000:.2f} ms | {fmt_bytes(m['record_bytes_written'])} | "
                f"{fmt_bytes(q['live_bytes'])} | {fmt_bytes(q['file_bytes'])} | {fmt_bytes(m['bound_bytes'])} | "
                f"{q['compaction_generation']} | {settled} |"
            )
            on_demand = m.get("on_demand")
            if on_demand and on_demand["input_bytes"]:
                out.append(
                    f"| off, then `Log::compact()` | – | – | – | – | – | – | {fmt_bytes(on_demand['after']['live_bytes'])} | "
                    f"{fmt_bytes(on_demand['after']['file_bytes'])} | – | 1 | {on_demand['millis'] / 1000:.2f} s to compact "
                    f"{fmt_bytes(on_demand['input_bytes'])} |"
                )

    opens = figures.get("open", [])
    if opens:
        out += ["", "Open, median until the first read is served (warm page cache; a crash is a copy of the "
                "directory taken while the store was open, copied afresh and synced before each timed open):", ""]
        out += table_head("data", "Annals log", "`Log::open` clean", "`LogReader::open` clean", "redb clean",
                          "`Log::open` crash", "`LogReader::open` crash", "redb crash")
        for o in opens:
            label = o["label"]
            cell = lambda name, state: fmt_time(time(f"lifecycle_open/{name}_{label}_{state}"))
            cells = [cell(name, state) for state in ["clean", "crash"] for name in ["annals_log", "annals_reader", "redb"]]
            data = f"{fmt_bytes(o['annals_log_bytes'])} (redb {fmt_bytes(o['redb_file_bytes'])})"
            out.append(f"| {label} ({o['rows']:,} rows) | {data} | " + " | ".join(cells) + " |")

    closes = [o for o in opens if f"lifecycle_close/annals_{o['label']}_close_after_one_append" in results]
    if closes:
        out += ["", "Close after one durable append (the open and the append untimed; the close writes the "
                "clean-close marker and state slots, and rewrites the index image whole), against redb's "
                "commit of one row on the same rows:", ""]
        out += table_head("data", "Annals `close`", "redb commit of one row")
        for o in closes:
            label = o["label"]
            out.append(f"| {label} ({o['rows']:,} rows) | "
                       f"{fmt_time(time(f'lifecycle_close/annals_{label}_close_after_one_append'))} | "
                       f"{fmt_time(time(f'lifecycle_close/redb_{label}_commit_one_row'))} |")

    compaction = figures.get("compaction")
    if compaction:
        key = "lifecycle_compaction/annals_compact_warm"
        out += ["", f"Compaction: `Log::compact()` read {compaction['inputs']} sealed segments, "
                f"{fmt_bytes(compaction['input_bytes'])}, and wrote {fmt_bytes(compaction['output_bytes'])} "
                f"({compaction['records_kept']:,} records kept; the log's live bytes {fmt_bytes(compaction['live_bytes'])}) "
                f"in {fmt_time(time(key))}, warm page cache, including its syncs, commit and unlinks."]

    disks = figures.get("small_log", {}).get("disk_after_close", [])
    if disks:
        out += ["", "Small log: a new store in a fresh directory, until its first durable write is acknowledged, "
                "and its disk once closed:", ""]
        out += table_head("system", "create + first durable write", "file lengths after close", "allocated after close")
        for d in disks:
            out.append(f"| {d['system']} | {fmt_time(time('lifecycle_small_log/' + d['system']))} | "
                       f"{fmt_bytes(d['file_bytes'])} | {fmt_bytes(d['allocated_bytes'])} |")
    return "\n".join(out)


def lifecycle_summary(results, figures):
    out = ["Measured with `cargo bench --bench lifecycle && python3 benches/report.py` "
           "(details and run conditions in [`benches/README.md`](benches/README.md#storage-lifecycle)):", ""]
    out.extend(targets_table(lifecycle_targets(results, figures)))
    return "\n".join(out)


def replace_section(path, text, marker="bench-table"):
    content = path.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in content:
        return
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def main():
    results = load_results()
    lifecycle_figures = load_lifecycle_figures()
    workloads = {key: value for key, value in results.items() if is_workload(key.partition("/")[0])}
    lifecycle = {key: value for key, value in results.items() if key.startswith("lifecycle_")}
    if not workloads and not lifecycle:
        raise SystemExit("no criterion results: run `cargo bench --bench workloads` or `--bench lifecycle` first")
    facts = machine_facts()
    if workloads:
        rows, targets, memory, notes = build(results)
        text = markdown(rows, targets, memory, notes, facts)
        plot = svg_plot(results)
        if plot:
            (ROOT / "benches" / "w2-writers.svg").write_text(plot + "\n")
        replace_section(ROOT / "benches" / "README.md", text)
        replace_section(ROOT / "README.md", text.replace("(w2-writers.svg)", "(benches/w2-writers.svg)"))
        print(text)
    if lifecycle:
        text = lifecycle_markdown(lifecycle, lifecycle_figures, facts)
        replace_section(ROOT / "benches" / "README.md", text, "lifecycle-table")
        replace_section(ROOT / "README.md", lifecycle_summary(lifecycle, lifecycle_figures), "lifecycle-table")
        print(text)


if __name__ == "__main__":
    main()
