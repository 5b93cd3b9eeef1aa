#!/usr/bin/env python3
"""Turn bench.sh's raw rows into the markdown result table (stdout).

results.tsv: scenario tool round wall_s rss_kib user_s sys_s box_cpu_s dovecot_cpu_s messages
  (round 0 is a warm-up and is left out of every figure)
checks.tsv:  scenario what ok|FAIL detail
notes.tsv:   scenario note
"""
import argparse
import statistics
from collections import defaultdict

SCENARIOS = ["imap-maildir", "pop3-maildir", "imap-imap"]
TITLES = {"all": "all", "imap-maildir": "IMAP -> Maildir", "pop3-maildir": "POP3 -> Maildir", "imap-imap": "IMAP -> IMAP"}


def rows(path, n):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= n:
                out.append(parts)
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def cell(s):
    return s.replace("|", "\\|")


def fmt(x, spec=".2f", unit=""):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--checks", required=True)
    ap.add_argument("--notes", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()

    runs = defaultdict(dict)  # (scenario, tool) -> round -> row
    for sc, tool, rnd, wall, rss, user, sys_, box, dov, msgs in rows(a.results, 10):
        if rnd == "0":
            continue
        runs[(sc, tool)][int(rnd)] = dict(wall=float(wall), rss=int(rss) / 1024, cpu=float(user) + float(sys_),
                                          user=float(user), sys=float(sys_), box=float(box), dovecot=float(dov),
                                          other=max(0.0, float(box) - float(user) - float(sys_) - float(dov)), msgs=msgs)

    def med(sc, tool, key="wall"):
        r = runs.get((sc, tool))
        return median([v[key] for v in r.values()]) if r else None

    def ratio(sc, a_tool, b_tool):
        """Median over rounds of a's time / b's time, pairing rounds run next to each other."""
        ra, rb = runs.get((sc, a_tool), {}), runs.get((sc, b_tool), {})
        pairs = [ra[k]["wall"] / rb[k]["wall"] for k in ra if k in rb and rb[k]["wall"] > 0]
        return median(pairs), len(pairs)

    print("# mailferry side-by-side benchmark: last result\n")
    for m in a.meta:
        k, _, v = m.partition("=")
        print(f"- {k}: {v}")
    print()
    print("## Times\n")
    print("Medians over the timed rounds (the warm-up run of each tool is left out). Client CPU is the")
    print("tool's own user+sys (children included); Dovecot CPU is the server's sessions (TLS included);")
    print("other CPU is what the rest of the machine spent meanwhile (the benchmark's noise).\n")
    print("| scenario | tool | runs | median wall | min - max | peak RSS | client CPU (user+sys) | Dovecot CPU | other CPU | messages |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {s: i for i, s in enumerate(SCENARIOS)}
    for (sc, tool) in sorted(runs, key=lambda k: (order.get(k[0], 9), k[1] != "mailferry", k[1])):
        r = runs[(sc, tool)]
        walls = [v["wall"] for v in r.values()]
        msgs = sorted({v["msgs"] for v in r.values()})
        print(f"| {TITLES.get(sc, sc)} | {tool} | {len(r)} | {median(walls):.2f} s | {min(walls):.2f} - {max(walls):.2f} s"
              f" | {max(v['rss'] for v in r.values()):.0f} MiB"
              f" | {med(sc, tool, 'user'):.2f} + {med(sc, tool, 'sys'):.2f} s"
              f" | {med(sc, tool, 'dovecot'):.2f} s | {med(sc, tool, 'other'):.2f} s | {', '.join(msgs)} |")
    print()

    print("## Targets\n")
    print("| target | measured | goal | result |")
    print("|---|---|---|---|")

    def target(name, value, shown, goal, ok):
        if value is None:
            res, shown = "not measured", "n/a"
        else:
            res = "met" if ok(value) else "**not met**"
        print(f"| {name} | {shown} | {goal} | {res} |")

    r, n = ratio("imap-maildir", "mailferry", "mbsync")
    target("IMAP -> Maildir: mailferry / mbsync", r, f"{fmt(r)}x (median of {n} paired rounds)", "<= 0.4x",
           lambda v: v <= 0.4)
    # The combined floor: the bare read and the durable writes of the same files at once
    # (writefloor/, together.sh), measured next to each mailferry run.
    for sc, title in (("imap-maildir", "IMAP -> Maildir"), ("pop3-maildir", "POP3 -> Maildir")):
        r, n = ratio(sc, "mailferry", "combined")
        target(f"{title}: mailferry / combined floor (bare read and durable writes at once)", r,
               f"{fmt(r)}x (median of {n} paired rounds)", "<= 1.3x", lambda v: v <= 1.3)
        r, n = ratio(sc, "mailferry", "writefloor")
        if r is not None:
            print(f"| {title}: mailferry / durable-write floor alone (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    v = med("imap-maildir", "mailferry-rerun")
    target("IMAP -> Maildir: rerun with nothing new", v, fmt(v, unit=" s"), "< 1 s", lambda v: v < 1)
    r, n = ratio("imap-maildir", "mailferry", "imapfloor")
    if r is not None:
        print(f"| IMAP -> Maildir: mailferry / bare range-FETCH read (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    r, n = ratio("pop3-maildir", "mailferry", "popfloor")
    target("POP3 -> Maildir: mailferry / bare pipelined read (whole process)", r,
           f"{fmt(r)}x (median of {n} paired rounds)", "<= 3x", lambda v: v <= 3)
    g, m = med("pop3-maildir", "getmail"), med("pop3-maildir", "mailferry")
    if g is None and med("pop3-maildir", "getmail-extrapolated") is not None:
        g = med("pop3-maildir", "getmail-extrapolated")
    v = g / m if g and m else None
    target("POP3 -> Maildir: getmail / mailferry", v, f"{fmt(v, '.0f')}x ({fmt(g, '.1f')} s / {fmt(m)} s)",
           ">= 30x", lambda v: v >= 30)
    # dsync reads its source over plain IMAP on loopback (peers.sh) and writes bob's Maildir
    # itself; mailferry goes through the network on both sides. Each ratio pairs the same
    # transport: plain with plain, TLS with TLS. The old cross pairing is shown for information.
    r, n = ratio("imap-imap", "mailferry-plain", "dsync")
    target("IMAP -> IMAP, plain IMAP on loopback: mailferry-plain / dsync", r,
           f"{fmt(r)}x (median of {n} paired rounds)", "<= 1x", lambda v: v <= 1)
    r, n = ratio("imap-imap", "mailferry", "dsync-tls")
    target("IMAP -> IMAP, TLS: mailferry / dsync-tls", r, f"{fmt(r)}x (median of {n} paired rounds)", "<= 1x",
           lambda v: v <= 1)
    r, n = ratio("imap-imap", "mailferry", "dsync")
    if r is not None:
        print(f"| IMAP -> IMAP: mailferry over TLS / dsync over plain IMAP (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    r, n = ratio("imap-imap", "mailferry", "mbsync")
    if r is not None:
        print(f"| IMAP -> IMAP: mailferry / mbsync (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    print()

    checks = rows(a.checks, 4)
    print("## Correctness checks\n")
    if checks:
        print("| scenario | check | result | detail |")
        print("|---|---|---|---|")
        for sc, what, ok, detail in checks:
            print(f"| {TITLES.get(sc, sc)} | {cell(what)} | {'ok' if ok == 'ok' else '**FAIL**'} | {cell(detail)} |")
    else:
        print("(none ran)")
    print()
    notes = rows(a.notes, 2)
    if notes:
        print("## Notes\n")
        for sc, note in notes:
            print(f"- {TITLES.get(sc, sc)}: {note}")  # prose, not a table cell
        print()


if __name__ == "__main__":
    main()
