#!/usr/bin/env python3
"""Prints a Markdown table of the last run of every target from fuzz/logs/<target>.log
(written by scripts/fuzz.sh): executions, exec/s, coverage (edges), features, corpus, new
inputs found, and the execution at which coverage last grew (how early the run plateaued)."""
import os, re, sys

logs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")
rows = []
for name in sorted(os.listdir(logs)):
    if not name.endswith(".log"):
        continue
    text = open(os.path.join(logs, name), errors="replace").read()
    stat = dict(re.findall(r"^stat::(\w+):\s*(\d+)", text, re.M))
    status = re.findall(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", text, re.M)
    inited = next((s for s in status if s[1] == "INITED"), None)
    last = status[-1] if status else None
    grew = [s for s in status if s[1] in ("NEW", "REDUCE") and (not inited or int(s[2]) > 0)]
    cov_grew = [s for s in status if s[1] == "NEW"]
    last_cov = None
    best = -1
    for s in status:
        if int(s[2]) > best:
            best = int(s[2])
            last_cov = s[0]
    crashed = "deadly signal" in text or "panicked" in text or "ERROR: libFuzzer" in text
    rows.append((
        name[:-4],
        stat.get("number_of_executed_units", last[0] if last else "?"),
        stat.get("average_exec_per_sec", "?"),
        f"{inited[2]} → {last[2]}" if inited and last else "?",
        f"{inited[3]} → {last[3]}" if inited and last else "?",
        f"{last[4]} / {last[5]}" if last else "?",
        stat.get("new_units_added", "?"),
        last_cov or "?",
        stat.get("peak_rss_mb", "?"),
        "CRASH" if crashed else "ok",
    ))
print("| target | runs | exec/s | coverage (edges), start → end | features, start → end | corpus (inputs / size) | new inputs | coverage last grew at run | peak RSS MB | result |")
print("|---|---:|---:|---|---|---|---:|---:|---:|---|")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")
