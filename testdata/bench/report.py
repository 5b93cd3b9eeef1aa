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

SCENARIOS = ["imap-maildir", "pop3-maildir", "imap-imap", "nightly", "nightly-200k", "sync-maildir", "sync-imap",
             "sync-200k"]
TITLES = {"all": "all", "imap-maildir": "IMAP -> Maildir", "pop3-maildir": "POP3 -> Maildir", "imap-imap": "IMAP -> IMAP",
          "nightly": "nightly 50k (IMAP -> Maildir)", "nightly-200k": "nightly 200k / 10 folders",
          "sync-maildir": "sync IMAP <-> Maildir", "sync-imap": "sync IMAP <-> IMAP", "sync-200k": "sync 200k"}


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


RSS_ALL = {}  # (scenario, tool) -> highest peak RSS in MiB over every run, warm-ups included


def peak(runs, sc, prefix):
    """The highest peak RSS (MiB) over every run of the tools named PREFIX... in SC, warm-ups
    included (a budget holds for every run, not for the median)."""
    vals = [v for (s, t), v in RSS_ALL.items() if s == sc and t.startswith(prefix)]
    return max(vals) if vals else None


def cpu_note(runs, sc, a_tool, b_tool):
    """The CPU both tools cost the machine (their own user+sys and Dovecot's), medians: on a
    loaded machine the wall clock mostly measures the neighbours, this much less."""
    def cpu(tool):
        r = runs.get((sc, tool))
        return median([v["cpu"] + v["dovecot"] for v in r.values()]) if r else None
    a, b = cpu(a_tool), cpu(b_tool)
    if a is None or b is None:
        return ""
    return f"; CPU incl. Dovecot's {a:.2f} s vs {b:.2f} s"


def nightly_targets(target, med, ratio, runs):
    """Issue 11: no-op rerun 50k (<= 0.2 s, <= 0.2x mbsync), 200k no-op (<= 0.3 s), one new
    message and one flag (<= 0.3 s), peak RSS <= 64 MiB for every run."""
    v = med("nightly", "mailferry-noop")
    target("nightly 50k: no-op rerun", v, fmt(v, unit=" s"), "<= 0.2 s", lambda v: v <= 0.2, "nightly")
    r, n = ratio("nightly", "mailferry-noop", "mbsync-noop")
    target("nightly 50k: no-op rerun / mbsync's no-op rerun", r,
           f"{fmt(r)}x (median of {n} paired rounds; mbsync {fmt(med('nightly', 'mbsync-noop'), unit=' s')}"
           f"{cpu_note(runs, 'nightly', 'mailferry-noop', 'mbsync-noop')})",
           "<= 0.2x", lambda v: v <= 0.2, "nightly")
    # The floor of a no-op (imapfloor -mode status, measured in the same rounds): what any
    # tool pays to learn that nothing moved, TLS login and the server's STATUS work included.
    r, n = ratio("nightly", "mailferry-noop", "noopfloor")
    if r is not None:
        print(f"| nightly 50k: no-op rerun / its floor (TLS login + LIST-STATUS + LOGOUT; for information) | {fmt(r)}x "
              f"(median of {n} paired rounds; floor {fmt(med('nightly', 'noopfloor'), unit=' s')}"
              f"{cpu_note(runs, 'nightly', 'mailferry-noop', 'noopfloor')}) | - | - |")
    r, n = ratio("nightly", "noopfloor", "mbsync-noop")
    if r is not None:
        print(f"| nightly 50k: that floor / mbsync's no-op rerun (the least a 0.2x target can be; for information) | {fmt(r)}x "
              f"(median of {n} paired rounds) | - | - |")
    v = med("nightly", "mailferry-change")
    target("nightly 50k: rerun after 1 new message + 1 flag change", v, fmt(v, unit=" s"), "<= 0.3 s",
           lambda v: v <= 0.3, "nightly")
    r, n = ratio("nightly", "mailferry-change", "mbsync-change")
    if r is not None:
        print(f"| nightly 50k: that rerun / mbsync's (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    v = med("nightly-200k", "mailferry-noop")
    target("nightly 200k / 10 folders: no-op rerun", v, fmt(v, unit=" s"), "<= 0.3 s", lambda v: v <= 0.3, "nightly-200k")
    r, n = ratio("nightly-200k", "mailferry-noop", "noopfloor")
    if r is not None:
        print(f"| nightly 200k: no-op rerun / its floor (for information) | {fmt(r)}x (median of {n} paired rounds; "
              f"floor {fmt(med('nightly-200k', 'noopfloor'), unit=' s')}) | - | - |")
    c = med("nightly-200k", "mailferry-copy")
    if c is not None:
        print(f"| nightly 200k: first copy and the rerun after it (for information) | {fmt(c, unit=' s')} (median of both) | - | - |")
    for sc in ("nightly", "nightly-200k"):
        v = peak(runs, sc, "mailferry")
        target(f"{TITLES[sc]}: peak RSS of every mailferry run (copy, reruns)", v, fmt(v, ".0f", " MiB"),
               "<= 64 MiB", lambda v: v <= 64, sc)


def sync_targets(target, med, ratio, runs):
    """Issue 12: mailferry sync against mbsync (and OfflineIMAP for information): first sync
    <= 0.5x, after 1 % changes <= 0.5x, nothing changed <= 0.2x; peak RSS <= 64 MiB (<= 96 MiB
    for the 200k account)."""
    goals = {"first": 0.5, "changes": 0.5, "noop": 0.2}
    words = {"first": "first sync", "changes": "sync after 1 % changes on each side", "noop": "sync, nothing changed"}
    for sc in ("sync-maildir", "sync-imap"):
        if not any(s == sc for s, _ in runs):
            continue
        for phase, goal in goals.items():
            r, n = ratio(sc, f"mailferry-{phase}", f"mbsync-{phase}")
            ms = statistics.median([v["wall"] for v in runs.get((sc, f"mailferry-{phase}"), {}).values()] or [0])
            target(f"{TITLES[sc]}: {words[phase]} / mbsync", r,
                   f"{fmt(r)}x (median of {n} paired rounds; mailferry {ms:.2f} s"
                   f"{cpu_note(runs, sc, f'mailferry-{phase}', f'mbsync-{phase}')})", f"<= {goal}x",
                   lambda v, g=goal: v <= g, sc)
            o, n = ratio(sc, f"mailferry-{phase}", f"offlineimap-{phase}")
            if o is not None:
                print(f"| {TITLES[sc]}: {words[phase]} / OfflineIMAP (for information) | {fmt(o)}x (median of {n} paired rounds) | - | - |")
        # The no-op's login floor (imapfloor -mode status per IMAP side, at once; same rounds).
        r, n = ratio(sc, "mailferry-noop", "noopfloor")
        if r is not None:
            print(f"| {TITLES[sc]}: sync, nothing changed / its login floor (TLS login + LIST-STATUS + LOGOUT per IMAP side; "
                  f"for information) | {fmt(r)}x (median of {n} paired rounds; floor {fmt(med(sc, 'noopfloor'), unit=' s')}"
                  f"{cpu_note(runs, sc, 'mailferry-noop', 'noopfloor')}) | - | - |")
            r, n = ratio(sc, "noopfloor", "mbsync-noop")
            if r is not None:
                print(f"| {TITLES[sc]}: that floor / mbsync's no-op sync (the least a 0.2x target can be; for information) | "
                      f"{fmt(r)}x (median of {n} paired rounds) | - | - |")
        # The change sync's floor (changefloor/, same rounds, its own pair with the same changes):
        # what any tool must do on the servers and the disk, told what changed.
        for tool in ("mailferry", "mbsync", "offlineimap"):
            r, n = ratio(sc, f"{tool}-changes", "changefloor")
            if r is None:
                continue
            extra = f"; floor {fmt(med(sc, 'changefloor'), unit=' s')}" if tool == "mailferry" else ""
            print(f"| {TITLES[sc]}: sync after 1 % changes, {tool} / its floor (servers' and disk's work only, "
                  f"pipelined; for information) | {fmt(r)}x (median of {n} paired rounds{extra}"
                  f"{cpu_note(runs, sc, f'{tool}-changes', 'changefloor')}) | - | - |")
        r, n = ratio(sc, "changefloor", "mbsync-changes")
        if r is not None:
            print(f"| {TITLES[sc]}: that floor / mbsync's sync after 1 % changes (the least a 0.5x target can be; "
                  f"for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
        # The same floor waiting for LOGIN's and each SELECT's answer before writing on (its own
        # pair, same rounds): what those round trips cost a tool that checks them.
        r, n = ratio(sc, "changefloor-wait", "changefloor")
        if r is not None:
            print(f"| {TITLES[sc]}: that floor waiting for LOGIN and each SELECT / the floor (for information) | "
                  f"{fmt(r)}x (median of {n} paired rounds; {fmt(med(sc, 'changefloor-wait'), unit=' s')}) | - | - |")
        v = peak(runs, sc, "mailferry")
        target(f"{TITLES[sc]}: peak RSS of every mailferry sync", v, fmt(v, ".0f", " MiB"), "<= 64 MiB",
               lambda v: v <= 64, sc)
    v = peak(runs, "sync-200k", "mailferry")
    target("sync 200k: peak RSS of every mailferry sync (first, no-op)", v, fmt(v, ".0f", " MiB"), "<= 96 MiB",
           lambda v: v <= 96, "sync-200k")
    r = runs.get(("sync-200k", "mailferry-noop"))
    if r:
        print(f"| sync 200k: no-op sync (for information) | {fmt(median([x['wall'] for x in r.values()]), unit=' s')} | - | - |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--checks", required=True)
    ap.add_argument("--notes", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()

    runs = defaultdict(dict)  # (scenario, tool) -> round -> row
    for sc, tool, rnd, wall, rss, user, sys_, box, dov, msgs in rows(a.results, 10):
        RSS_ALL[(sc, tool)] = max(RSS_ALL.get((sc, tool), 0.0), int(rss) / 1024)
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

    ran = {sc for sc, _ in runs}

    def target(name, value, shown, goal, ok, sc=None):
        if sc is not None and sc not in ran:
            return  # a scenario that was not asked for this run: no row
        if value is None:
            res, shown = "not measured", "n/a"
        else:
            res = "met" if ok(value) else "**not met**"
        print(f"| {name} | {shown} | {goal} | {res} |")

    r, n = ratio("imap-maildir", "mailferry", "mbsync")
    target("IMAP -> Maildir: mailferry / mbsync", r, f"{fmt(r)}x (median of {n} paired rounds)", "<= 0.4x",
           lambda v: v <= 0.4, "imap-maildir")
    # The combined floor: the bare read and the durable writes of the same files at once
    # (writefloor/, together.sh), measured next to each mailferry run.
    for sc, title in (("imap-maildir", "IMAP -> Maildir"), ("pop3-maildir", "POP3 -> Maildir")):
        r, n = ratio(sc, "mailferry", "combined")
        target(f"{title}: mailferry / combined floor (bare read and durable writes at once)", r,
               f"{fmt(r)}x (median of {n} paired rounds)", "<= 1.3x", lambda v: v <= 1.3, sc)
        r, n = ratio(sc, "mailferry", "writefloor")
        if r is not None:
            print(f"| {title}: mailferry / durable-write floor alone (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    v = med("imap-maildir", "mailferry-rerun")
    target("IMAP -> Maildir: rerun with nothing new", v, fmt(v, unit=" s"), "< 1 s", lambda v: v < 1, "imap-maildir")
    r, n = ratio("imap-maildir", "mailferry", "imapfloor")
    if r is not None:
        print(f"| IMAP -> Maildir: mailferry / bare range-FETCH read (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    r, n = ratio("pop3-maildir", "mailferry", "popfloor")
    target("POP3 -> Maildir: mailferry / bare pipelined read (whole process)", r,
           f"{fmt(r)}x (median of {n} paired rounds)", "<= 3x", lambda v: v <= 3, "pop3-maildir")
    g, m = med("pop3-maildir", "getmail"), med("pop3-maildir", "mailferry")
    if g is None and med("pop3-maildir", "getmail-extrapolated") is not None:
        g = med("pop3-maildir", "getmail-extrapolated")
    v = g / m if g and m else None
    target("POP3 -> Maildir: getmail / mailferry", v, f"{fmt(v, '.0f')}x ({fmt(g, '.1f')} s / {fmt(m)} s)",
           ">= 30x", lambda v: v >= 30, "pop3-maildir")
    # dsync reads its source over plain IMAP on loopback (peers.sh) and writes bob's Maildir
    # itself; mailferry goes through the network on both sides. Each ratio pairs the same
    # transport: plain with plain, TLS with TLS. The old cross pairing is shown for information.
    r, n = ratio("imap-imap", "mailferry-plain", "dsync")
    target("IMAP -> IMAP, plain IMAP on loopback: mailferry-plain / dsync", r,
           f"{fmt(r)}x (median of {n} paired rounds)", "<= 1x", lambda v: v <= 1, "imap-imap")
    r, n = ratio("imap-imap", "mailferry", "dsync-tls")
    target("IMAP -> IMAP, TLS: mailferry / dsync-tls", r, f"{fmt(r)}x (median of {n} paired rounds)", "<= 1x",
           lambda v: v <= 1, "imap-imap")
    r, n = ratio("imap-imap", "mailferry", "dsync")
    if r is not None:
        print(f"| IMAP -> IMAP: mailferry over TLS / dsync over plain IMAP (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    r, n = ratio("imap-imap", "mailferry", "mbsync")
    if r is not None:
        print(f"| IMAP -> IMAP: mailferry / mbsync (for information) | {fmt(r)}x (median of {n} paired rounds) | - | - |")
    nightly_targets(target, med, ratio, runs)
    sync_targets(target, med, ratio, runs)
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
