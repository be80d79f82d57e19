"""All rendering: the printed reports of every suite, the targets table,
the chart (matplotlib) and the README section, made from the JSON documents
the suites write (and from nothing else, so a committed results file renders
again).  It imports only ``bench.common``; the suites import it.

    python -m bench render [RESULTS.json] [--chart PATH] [--readme PATH] [--print]

RESULTS.json defaults to the newest full ``bench/results/all-*.json``.  The
chart goes to ``bench/results/chart.png``; the README's text between
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is replaced by the
generated section (nothing else in the README is touched), so the README can
always be regenerated from a committed results file.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import RESULTS_DIR, Metric, MiB, Workload, median

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET_LABELS = {
    "pastedb": "pastedb",
    "redis-always": "redis always",
    "pastedb-copy": "pastedb --copy",
    "redis-everysec": "redis everysec (ref)",
}
ZC_LABELS = {"zero-copy": "zero-copy", "copy": "--copy"}
PAPER = (1.10, 1.88)  # PASTE (NSDI'18): +10-88 % throughput from zero-copy
NOT_AVAILABLE_TITLE = "lazy vs eager indexing"  # the index group on a build without index=


# ====================================================================== tables
def fmt_num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}x"


def render_table(
    workloads: Sequence[Workload],
    labels: dict[str, str] | None = None,
    extra_ratios: Sequence[tuple[str, str, str]] = (),
    extra_engines: Sequence[str] = (),
    markdown: bool = False,
) -> str:
    """One row per metric: the medians of the first two engines, their ratio
    (the one judged against the target), the spread of the per-pair ratios,
    the target and whether it is met; then any ``extra_ratios`` (numerator
    engine, denominator engine, column label) and the medians of
    ``extra_engines``.  The engines of the first workload name the columns;
    ``labels`` renames engines in the header."""
    if not workloads:
        return ""
    labels = labels or {}
    a, b = workloads[0].engines[:2]
    la, lb = labels.get(a, a), labels.get(b, b)
    header = ["workload", "metric", la, lb, f"{la}/{lb}", "pairs min-max", "target", "met?"]
    header += [lab for _n, _d, lab in extra_ratios]
    header += [labels.get(e, e) for e in extra_engines]
    rows: list[list[str]] = []
    for w in workloads:
        for i, m in enumerate(w.metrics):
            r = w.ratio(m.key)
            pr = w.pair_ratios(m.key)
            met = m.met(r)
            rows.append(
                [
                    w.title if i == 0 else "",
                    m.label,
                    fmt_num(w.med(w.engines[0], m.key)),
                    fmt_num(w.med(w.engines[1], m.key)),
                    fmt_ratio(r),
                    f"{min(pr):.2f}-{max(pr):.2f}" if pr else "-",
                    m.target_text(),
                    "-" if met is None else ("yes" if met else "NO"),
                ]
                + [fmt_ratio(w.ratio_of(n, d, m.key)) for n, d, _lab in extra_ratios]
                + [fmt_num(w.med(e, m.key)) for e in extra_engines]
            )
    if markdown:
        return _markdown(header, rows)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
    left = {0, 1}

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    rule = "-+-".join("-" * x for x in widths)
    out = [line(header), rule]
    prev = None
    for owner, cells in zip(_row_owners(workloads), rows, strict=True):
        if prev is not None and owner is not prev:
            out.append(rule)
        out.append(line(cells))
        prev = owner
    return "\n".join(out)


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in header) + " |"]
    out.append("| " + " | ".join("---" for _ in header) + " |")
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_rows(
    header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """A plain table of strings (first column left-aligned, the rest right-aligned)."""
    if markdown:
        return _markdown(header, rows)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    return "\n".join([line(header), "-+-".join("-" * x for x in widths), *map(line, rows)])


def _row_owners(workloads: Sequence[Workload]) -> list[Workload]:
    return [w for w in workloads for _ in w.metrics]


# ====================================================================== documents
def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return dict(json.load(f))


def parts(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(embedded document, network document) of an all/embedded/network report."""
    suite = doc.get("suite")
    if suite == "all":
        return doc.get("embedded"), doc.get("network")
    if suite == "embedded":
        return doc, None
    if suite == "network":
        return None, doc
    raise ValueError(f"not a bench results file (suite={suite!r})")


def workloads(section: dict[str, Any] | None, key: str = "workloads") -> list[Workload]:
    return [Workload.from_json(w) for w in (section or {}).get(key) or []]


def nan(x: Any) -> float:
    return math.nan if x is None else float(x)


# ====================================================================== targets
def target_row(
    suite: str, w: Workload, m: Metric, peer: str, ratio_of: str | None = None
) -> dict[str, Any]:
    """One row of the targets table: metric m of w, judged on this run's medians."""
    r = w.ratio(m.key)
    pr = w.pair_ratios(m.key)
    return {
        "suite": suite,
        "workload": w.title,
        "metric": m.label,
        "peer": peer,
        **({"ratio_of": ratio_of} if ratio_of else {}),
        "ratio": r,
        "pairs_min_max": [min(pr), max(pr)] if pr else None,
        "target": m.target_text(),
        "met": bool(m.met(r)),
    }


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric with a target, judged on the medians of this run."""
    emb, net = parts(doc)
    out: list[dict[str, Any]] = []
    for suite, ws, peer in (
        ("embedded", workloads(emb), "LMDB"),
        ("network", workloads(net), "Redis (appendfsync always)"),
    ):
        for w in ws:
            for m in w.metrics:
                if m.target is None:
                    continue
                row = target_row(suite, w, m, peer)
                if suite == "network":
                    row["ratio_copy"] = w.ratio_of("pastedb-copy", "redis-always", m.key)
                out.append(row)
    # pastedb against itself: lazy / eager index, open time, space ratio
    out += internals_targets((emb or {}).get("internals") or {})
    return out


def targets_table(doc: dict[str, Any], markdown: bool = False) -> str:
    rows = [
        [
            f"{t['suite']}: {t['workload']}",
            t["metric"].replace(" (lower better)", ""),
            t.get("ratio_of") or f"pastedb / {t['peer']}",
            t.get("measured_text") or fmt_ratio(nan(t.get("ratio"))),
            "{:.2f}-{:.2f}".format(*t["pairs_min_max"]) if t.get("pairs_min_max") else "-",
            t["target"],
            "-"
            if t["met"] is None  # measured at a size the target is not about
            else "**yes**"
            if markdown and t["met"]
            else "yes"
            if t["met"]
            else "NO",
            fmt_ratio(t["ratio_copy"]) if "ratio_copy" in t else "-",
        ]
        for t in targets(doc)
    ]
    if not rows:
        return "(no targets measured)"
    header = ["target", "metric", "ratio of", "measured", "pairs min-max", "target", "met?"]
    header.append("with --copy")
    return render_rows(header, rows, markdown)


# ====================================================================== network
def network_blocks(net: dict[str, Any], markdown: bool = False) -> list[str]:
    """The network report as blocks (tables and paragraphs)."""
    if net.get("skipped"):
        return [net["skipped"]]
    md = markdown
    cfg = net.get("config", {})
    main, zc = workloads(net), workloads(net, "zerocopy")
    blocks: list[str] = []
    if main:
        head = (
            f"pastedb serve vs redis-server, driven by redis-benchmark -d {cfg.get('value_bytes', 1024)} "
            f"over {cfg.get('keyspace', 0):,} random keys (written first), "
            f"{cfg.get('reps')} interleaved repetitions per server, medians; "
            "ratio = pastedb (zero-copy, the default) / redis appendfsync always"
        )
        blocks.append(f"*{head}*" if md else head)
        blocks.append(
            render_table(
                main,
                labels=NET_LABELS,
                extra_ratios=[("pastedb-copy", "redis-always", "--copy/redis always")],
                extra_engines=["pastedb-copy", "redis-everysec"],
                markdown=md,
            )
        )
        rpb = [
            f"{w.title}: {fmt_num(w.med('pastedb', 'req_per_barrier'))} / "
            f"{fmt_num(w.med('pastedb-copy', 'req_per_barrier'))}"
            for w in main
            if w.params.get("op") == "SET"
        ]
        if rpb:
            blocks.append(
                "pastedb requests per barrier (median, zero-copy / --copy; from INFO): "
                + "; ".join(rpb)
            )
        bd = breakdown_table(main, md)
        if bd:
            blocks.append(bd)
        blocks.append(limits_table(main, md))
    if zc:
        blocks.append(zerocopy_block(net, zc, md))
    blocks.append(physical_lines(net, md))
    for na in net.get("not_available") or []:
        blocks.append(f"{na['title']}: {na['why']}")
    for p in net.get("problems") or []:
        blocks.append(f"PROBLEM: {p}")
    return blocks


# INFO breakdown columns (bench/network.py BREAKDOWN): result key, header
BREAKDOWN_COLUMNS = [
    ("bd_wait_us", "wait"),
    ("bd_recv_us", "recv"),
    ("bd_run_us", "run"),
    ("bd_append_us", "append"),
    ("bd_send_us", "send"),
    ("bd_loop_barrier_us", "loop barrier"),
    ("bd_other_us", "other"),
    ("bd_flusher_barrier_us", "flusher barrier"),
    ("bd_linger_us", "linger"),
    ("bd_wake_us", "wake"),
    ("bd_barrier_each_us", "us per barrier"),
    ("bd_writes_per_barrier", "writes per barrier"),
]


def breakdown_table(main: list[Workload], md: bool) -> str:
    """Where a durable SET's time goes inside pastedb serve (INFO breakdown)."""
    rows = []
    for w in main:
        if w.params.get("op") != "SET":
            continue
        for e in ("pastedb", "pastedb-copy"):
            vals = [nan(w.med(e, key)) for key, _ in BREAKDOWN_COLUMNS]
            if all(math.isnan(v) for v in vals):
                continue
            rows.append([w.title, NET_LABELS[e], *("-" if math.isnan(v) else f"{v:,.1f}"
                                                   for v in vals)])
    if not rows:
        return ""
    title = (
        "pastedb: each durable SET's time by phase, in us per request (medians; INFO breakdown "
        "between CONFIG RESETSTAT and the end of the run). The loop thread: wait (epoll_wait: "
        "idle or waiting on clients and barriers), recv, run (parse and execute), append (the "
        "records into the log), send, loop barrier (it runs the barrier itself when at most "
        "one connection waits), other; the flusher thread, in parallel: flusher barrier, "
        "linger (waiting for a fuller group); wake: a flusher barrier's end to the loop "
        "seeing it"
    )
    header = ["workload", "server", *[h for _, h in BREAKDOWN_COLUMNS]]
    sep = "\n\n" if md else "\n"
    return (f"*{title}*" if md else title) + sep + render_rows(header, rows, md)


def limits_table(main: list[Workload], md: bool) -> str:
    engines = ["pastedb", "pastedb-copy", "redis-always", "redis-everysec"]
    rows = []
    for w in main:
        lim = w.extra.get("limit")
        if not lim:
            continue
        cells = [w.title, lim["formula"]]
        for e in engines:
            x = nan(lim["of_limit"].get(e))
            if math.isnan(x):
                cells.append("-")
            elif lim["metric"] == "rps":
                cells.append(f"{x * 100:.0f} %")
            else:
                cells.append(f"{x:.2f}x")
        rows.append(cells)
    title = (
        "as a share of the physical limit measured in this run "
        "(latency: a multiple of the limit, 1x is ideal; rate: a percentage of it)"
    )
    header = ["workload", "limit", *[NET_LABELS[e] for e in engines]]
    sep = "\n\n" if md else "\n"
    return (f"*{title}*" if md else title) + sep + render_rows(header, rows, md)


def pair_verdict(w: Workload, num: str, den: str) -> str:
    """faster / slower when every interleaved pair agrees, else "mixed"."""
    a, b = w.values(num, "rps"), w.values(den, "rps")
    prs = [x / y for x, y in zip(a, b, strict=False) if y]
    if not prs:
        return "-"
    if len(prs) > 1 and all(r > 1 for r in prs):
        return "faster"
    if len(prs) > 1 and all(r < 1 for r in prs):
        return "slower"
    return "mixed" if len(prs) > 1 else ("faster" if prs[0] > 1 else "slower")


def ratio_cell(w: Workload, num: str, den: str) -> str:
    a, b = w.values(num, "rps"), w.values(den, "rps")
    prs = [x / y for x, y in zip(a, b, strict=False) if y]
    r = w.ratio_of(num, den, "rps")
    if len(prs) > 1:
        return f"{fmt_ratio(r)} ({min(prs):.2f}-{max(prs):.2f}, {pair_verdict(w, num, den)})"
    return fmt_ratio(r)


def zerocopy_block(net: dict[str, Any], zc: list[Workload], md: bool) -> str:
    phys = net.get("physical") or {}
    gbps = nan((phys.get("memcpy_gbps") or {}).get("64MiB_median"))
    receive = net.get("receive") or {}
    zc_path = receive.get("zero-copy", "?")
    recv = any("recv-mapping" in w.engines for w in zc)
    fss = sorted({w.params["fs"] for w in zc}, key=lambda f: f != "tmpfs")
    header = ["fs", "value", f"zero-copy ({zc_path}) req/s", "--copy req/s"]
    header += ["zero-copy / --copy (pairs)"]
    if recv:
        header += ["recv into mapping req/s", "recv / --copy (pairs)"]
    header += ["req per barrier: zero-copy / --copy" + (" / recv" if recv else "")]
    header += ["1/rate: zero-copy minus --copy", "one memcpy of the value"]
    rows = []
    for w in sorted(zc, key=lambda w: (fss.index(w.params["fs"]), w.params["value_bytes"])):
        size = w.params["value_bytes"]
        cells = [w.params["fs"], f"{size // 1024} KiB", fmt_num(w.med("zero-copy", "rps"))]
        cells += [fmt_num(w.med("copy", "rps")), ratio_cell(w, "zero-copy", "copy")]
        if recv:
            cells += [fmt_num(w.med("recv-mapping", "rps")), ratio_cell(w, "recv-mapping", "copy")]
        cells.append(" / ".join(fmt_num(w.med(e, "req_per_barrier")) for e in w.engines))
        delta = nan(w.extra.get("per_request_us_zero_copy_minus_copy"))
        cells.append("-" if math.isnan(delta) else f"{delta:+,.1f} us")
        cells.append(f"{size / (gbps * 1e3):.2f} us" if gbps == gbps and gbps else "-")
        rows.append(cells)
    title = (
        "zero-copy receive vs --copy, SET at 50 clients (the PASTE paper reports +10-88 % "
        "throughput for zero-copy); ratios of req/s, medians of "
        f"{net.get('config', {}).get('reps')} interleaved repetitions (min-max of the pairs; "
        "faster/slower when every pair agrees)"
    )
    lines = [f"*{title}*" if md else title, "", render_rows(header, rows, md), ""]
    fsync = nan((phys.get("fdatasync_4k_pwrite_overwrite_us") or {}).get("p50"))
    mapped = nan((phys.get("fdatasync_1k_mapped_store_us") or {}).get("p50"))
    tmpfs_sync = nan((phys.get("fdatasync_tmpfs_4k_pwrite_us") or {}).get("p50"))
    bullet = "- " if md else "  "
    for fs in fss:
        ws = sorted((w for w in zc if w.params["fs"] == fs), key=lambda w: w.params["value_bytes"])
        said = ", ".join(f"{w.params['value_bytes'] // 1024} KiB {w.ratio('rps'):.2f}x" for w in ws)
        verdicts = [pair_verdict(w, "zero-copy", "copy") for w in ws]
        tally = ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("faster", "slower", "mixed") if verdicts.count(v)
        )
        per_req = [1e6 / w.med("copy", "rps") for w in ws if w.med("copy", "rps")]
        copies = [nan(w.extra.get("memcpy_us_per_value")) for w in ws]
        line = (
            f"{bullet}{fs}: zero-copy ({zc_path}) / --copy = {said} "
            f"(pairs: {tally.replace('mixed', 'mixed, i.e. within noise')}). Why: the copy "
            f"zero-copy avoids is one memcpy of the value ({min(copies):.1f}-{max(copies):.1f} us "
            f"at {gbps:.1f} GB/s), small beside the {min(per_req):,.0f}-{max(per_req):,.0f} us "
            "each request takes at 50 clients (1/rate)"
        )
        recv_ratios = [w.ratio_of("recv-mapping", "copy", "rps") for w in ws if recv]
        recv_slower = bool(recv_ratios) and median(recv_ratios) < 0.95
        if fs == "disk":
            if mapped > 1.5 * fsync and recv_slower:
                line += (
                    "; recv() straight into the mapping (PASTE's own path, the recv column) is "
                    "slower because a page dirtied through the shared mapping makes the next "
                    f"fdatasync dearer ({mapped:,.0f} us after a 1 KiB mapped store vs "
                    f"{fsync:,.0f} us after a pwrite, this run)"
                )
            elif mapped > 1.5 * fsync:
                line += (
                    f"; fdatasync after a 1 KiB mapped store took {mapped:,.0f} us vs "
                    f"{fsync:,.0f} us after a pwrite in this run"
                )
            else:
                line += (
                    "; this run's probes did not show the mapped-store fdatasync penalty "
                    f"({mapped:,.0f} us after a 1 KiB mapped store vs {fsync:,.0f} us after "
                    "a pwrite)"
                )
            if zc_path == "splice":
                line += (
                    "; the default path splice()s socket bytes into the pool file through the "
                    "page cache as write() does, so it avoids that"
                )
        else:
            line += (
                f"; tmpfs has no device flush (fdatasync p50 {tmpfs_sync:,.1f} us), and on "
                "loopback the kernel copies socket bytes into the pool in every mode (no NIC "
                "writes into it, unlike the paper's netmap), so the paper's gain has little "
                "to come from here"
            )
        big = [
            w
            for w in ws
            if abs(nan(w.extra.get("per_request_us_zero_copy_minus_copy")))
            > 3 * nan(w.extra.get("memcpy_us_per_value")) + 5
        ]
        if big:
            w = max(big, key=lambda w: abs(w.extra["per_request_us_zero_copy_minus_copy"]))
            line += (
                f"; gaps larger than one memcpy (e.g. {w.params['value_bytes'] // 1024} KiB: "
                f"{w.extra['per_request_us_zero_copy_minus_copy']:+,.0f} us per request vs a "
                f"{w.extra['memcpy_us_per_value']:.1f} us memcpy) are not the copy itself and "
                "are not diagnosed here"
            )
        line += "."
        lines.append(line)
    return "\n".join(lines)


def physical_lines(net: dict[str, Any], md: bool) -> str:
    phys = net.get("physical") or {}
    if not phys:
        return ""
    fs = phys.get("fdatasync_4k_pwrite_overwrite_us") or {}
    fm = phys.get("fdatasync_1k_mapped_store_us") or {}
    ft = phys.get("fdatasync_tmpfs_4k_pwrite_us") or {}
    mc = phys.get("memcpy_gbps") or {}
    ping = phys.get("ping") or {}
    fsys = (net.get("machine") or {}).get("filesystem") or {}
    b = "- " if md else "  "
    out = ["physical limits, measured in this run:" if not md else "*Physical limits, same run:*"]
    if md:
        out.append("")
    out.append(
        f"{b}fdatasync on the disk ({fsys.get('type', '?')} on {fsys.get('device', '?')}): "
        f"p50 {nan(fs.get('p50')):,.0f} us after a 4 KiB pwrite overwrite "
        f"(p10 {nan(fs.get('p10')):,.0f}, p90 {nan(fs.get('p90')):,.0f}; {fs.get('samples', 0)} samples), "
        f"p50 {nan(fm.get('p50')):,.0f} us after a 1 KiB store through a shared mapping"
    )
    if ft:
        out.append(f"{b}fdatasync on tmpfs: p50 {nan(ft.get('p50')):,.1f} us")
    out.append(
        f"{b}memcpy 64 MiB: {nan(mc.get('64MiB_median')):.1f} GB/s (best {nan(mc.get('64MiB_best')):.1f})"
    )
    c1, c50, p16 = ping.get("c1") or {}, ping.get("c50") or {}, ping.get("c50_p16") or {}
    out.append(
        f'{b}loopback PING (redis-benchmark -t ping against redis-server --save "" --appendonly no): '
        f"-c 1 p50 {nan(c1.get('p50_us')):,.0f} us ({nan(c1.get('rps')):,.0f} req/s), "
        f"-c 50 {nan(c50.get('rps')):,.0f} req/s, -c 50 -P 16 {nan(p16.get('rps')):,.0f} req/s"
    )
    return "\n".join(out)


def network_text(net: dict[str, Any]) -> str:
    out = [""]
    if not net.get("skipped"):
        m = net.get("machine") or {}
        v = net.get("versions") or {}
        out.append(
            f"network -- profile {net.get('profile')}; {m.get('cpu_model', '?')}, {m.get('cores')} cores, "
            f"kernel {m.get('kernel')}; {v.get('redis_server')}; {v.get('redis_benchmark')}"
        )
        for name, line in (net.get("servers") or {}).items():
            out.append(f"  {name}: {line}")
        out.append("")
    out.append("\n\n".join(b for b in network_blocks(net) if b))
    if net.get("total_seconds") is not None:
        out.append(f"network total time {net['total_seconds']:.0f}s")
    return "\n".join(out)


# ====================================================================== pastedb against itself (bench/internals.py)
def mib(x: Any) -> str:
    return "-" if x is None else f"{x / MiB:,.1f}"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def ms(x: Any) -> str:
    """Seconds as milliseconds."""
    return "-" if _missing(x) else f"{x * 1e3:,.1f}"


def us(x: Any) -> str:
    """Seconds as microseconds."""
    return "-" if _missing(x) else fmt_num(x * 1e6)


def count(x: Any) -> str:
    return "-" if _missing(x) else f"{x:,.0f}"


def internals_blocks(section: dict[str, Any], markdown: bool = False) -> list[str]:
    """The report of a results section, as text or Markdown blocks."""
    md = markdown
    out: list[str] = []

    def head(s: str) -> str:
        return f"*{s}*" if md else s

    idx = section.get("index")
    if idx:
        if not idx.get("available"):
            out.append(f"{NOT_AVAILABLE_TITLE}: not available: {idx.get('why')}")
        else:
            ws = [Workload.from_json(w) for w in idx.get("workloads") or []]
            if ws:
                reps = ws[0].params.get("reps")
                out.append(
                    head(
                        f"lazy vs eager indexing: 1 KiB puts, random 16-byte keys, 1 thread, into a "
                        f"database preloaded with {idx['n']:,} keys (then checkpoint and a clean close); "
                        f"{reps} interleaved repetitions per mode, medians; ratio = lazy / eager "
                        "(lower is better)"
                    )
                )
                out.append(render_table(ws, markdown=md))
                notes = []
                for w in ws:
                    pend = w.med("lazy", "index_pending_end")
                    notes.append(
                        f"{w.title}: {fmt_num(w.med('lazy', 'ops_s'))} / "
                        f"{fmt_num(w.med('eager', 'ops_s'))} puts/s lazy / eager; "
                        f"background checkpoints during the timed puts "
                        f"{count(w.med('lazy', 'checkpoints_during'))} / "
                        f"{count(w.med('eager', 'checkpoints_during'))}; "
                        f"entries still pending when the timed puts ended (lazy): {count(pend)}; "
                        f"the checkpoint right after them {ms(w.med('lazy', 'checkpoint_after_s'))}"
                        f" / {ms(w.med('eager', 'checkpoint_after_s'))} ms lazy / eager"
                    )
                b = "- " if md else "  "
                out.append("\n".join(b + x for x in notes))
    stall = section.get("stall")
    if stall and stall.get("available"):
        ws = [Workload.from_json(w) for w in stall.get("workloads") or []]
        for w in ws:
            out.append(
                head(
                    f"do checkpoints stall writers? {w.title}: puts timed while the checkpoint "
                    f"ran, against as many with none running (same pending table); "
                    f"{w.params.get('reps')} interleaved repetitions, medians; ratio = during / "
                    "without (lower is better)"
                )
            )
            out.append(render_table([w], markdown=md))
            out.append(
                ("- " if md else "  ")
                + f"the checkpoint took {fmt_num(w.med('checkpointing', 'checkpoint_s'))} s; "
                f"{count(w.med('checkpointing', 'puts'))} durable puts ran during it"
            )
    op = section.get("open")
    if op:
        cl = op["clean"]

        def row(after: str, written: str, pending: str, x: dict[str, Any]) -> list[str]:
            return [
                after,
                written,
                pending,
                count(x.get("recovered_records_median")),
                ms(x["open_s_median"]),
                f"{ms(x['open_s_min'])}-{ms(x['open_s_max'])}",
                us(x["first_get_s_median"]),
                ms(x["total_s_median"]),
                str(len(x["samples"])),
            ]

        rows = [row("clean close", "0", "-", cl)]
        for t in op["crash"]:
            pending = count(t.get("index_pending_at_kill_median"))
            rows.append(row("kill -9", f"{t['tail_written']:,}", pending, t))
        out.append(
            head(
                f"{op['title']}: each open timed inside a fresh python process (import excluded, "
                "page cache warm); median over the samples"
            )
        )
        header = [
            "after",
            "keys written after the last checkpoint",
            "pending at kill",
            "records replayed at open",
            "open ms",
            "open min-max",
            "first get us",
            "open + get ms",
            "samples",
        ]
        out.append(render_rows(header, rows, md))
        verdict = {True: "met", False: "NOT met", None: "not judged at this size"}[op["met"]]
        out.append(
            f"open + first get after a clean close: {ms(cl['total_s_median'])} ms, target < "
            f"{op['target_s'] * 1e3:g} ms at {op['target_keys']:,} keys: {verdict}"
        )
    sp = section.get("space")
    if sp:
        rows = []
        for name, ph in sp["phases"].items():
            st, d = ph.get("stats") or {}, ph["disk"]
            f = d["files"]
            rows.append(
                [
                    name.replace("_", " "),
                    mib(st.get("live_bytes")),
                    mib(st.get("file_bytes")),
                    f"{st['space_ratio']:.2f}" if st.get("space_ratio") is not None else "-",
                    " / ".join(mib(f.get("pool", {}).get(k)) for k in ("size", "allocated")),
                    " / ".join(mib(f.get("index", {}).get(k)) for k in ("size", "allocated"))
                    if "index" in f
                    else "-",
                    f"{d['allocated_over_live']:.2f}",
                ]
            )
        out.append(
            head(
                f"{sp['title']} (batches of {sp['params']['batch']}), then {sp['params']['then']}; "
                "MiB; stats() beside the files on disk (size / allocated)"
            )
        )
        header = [
            "state",
            "live",
            "file (stats)",
            "space_ratio",
            "pool size / alloc",
            "index size / alloc",
            "on disk / live",
        ]
        out.append(render_rows(header, rows, md))
        out.append(
            f"space_ratio after {sp['params']['then']}: {sp['space_ratio']:.2f}, target <= "
            f"{sp['target_ratio']:g}: {'met' if sp['met'] else 'NOT met'}"
            + ("" if sp.get("compact") else " (this build has no db.compact())")
        )
    return out


def internals_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    """This section's rows of the targets table."""
    out: list[dict[str, Any]] = []
    idx = section.get("index")
    if idx:
        ws = [Workload.from_json(w) for w in idx.get("workloads") or []]
        for w in ws:
            for m in w.metrics:
                if m.target is None:
                    continue
                ratio_of = 'index="lazy" / index="eager"'
                out.append(target_row("embedded", w, m, "eager indexing", ratio_of))
        if not idx.get("available"):
            out.append(
                {
                    "suite": "embedded",
                    "workload": f"durable put 1 KiB into {idx['n']:,} keys, 1 thread",
                    "metric": "p99 us",
                    "peer": "eager indexing",
                    "ratio_of": 'index="lazy" / index="eager"',
                    "ratio": None,
                    "measured_text": "not available",
                    "target": f"<= {idx['target_p99_ratio']:g}x"
                    if idx.get("target_p99_ratio")
                    else "-",
                    "met": False,
                }
            )
    stall = section.get("stall")
    if stall and stall.get("available"):
        for w in [Workload.from_json(w) for w in stall.get("workloads") or []]:
            for m in w.metrics:
                if m.target is not None:
                    out.append(
                        target_row("embedded", w, m, "no checkpoint running", "during / without")
                    )
    op = section.get("open")
    if op:
        x = op["clean"]["total_s_median"]
        out.append(
            {
                "suite": "embedded",
                "workload": f"open + first get after a clean close, {op['params']['n']:,} keys",
                "metric": "seconds",
                "peer": None,
                "ratio_of": "absolute",
                "ratio": None,
                "value": x,
                "measured_text": f"{x:.3f} s",
                "target": f"< {op['target_s']:g} s at {op['target_keys']:,} keys",
                "met": op["met"],  # None below that size
            }
        )
    sp = section.get("space")
    if sp:
        out.append(
            {
                "suite": "embedded",
                "workload": sp["title"],
                "metric": "space_ratio",
                "peer": None,
                "ratio_of": "file / live bytes (stats)",
                "ratio": sp["space_ratio"],
                "target": f"<= {sp['target_ratio']:g}x",
                "met": bool(sp["met"]),
            }
        )
    return out


def internals_not_available(section: dict[str, Any]) -> list[dict[str, str]]:
    """The "not available" notices of a results section (for ``all``)."""
    idx = section.get("index") or {}
    if idx and not idx.get("available"):
        return [
            {
                "id": "lazy_vs_eager_index",
                "title": NOT_AVAILABLE_TITLE,
                "why": f"not available: {idx.get('why')}",
            }
        ]
    return []


def not_available(section: dict[str, Any]) -> list[dict[str, str]]:
    """What a suite's report says could not run on this build."""
    own = internals_not_available(section.get("internals") or {})
    return [*(section.get("not_available") or []), *own]


# ====================================================================== embedded
def group_commit_lines(ws: Sequence[Workload]) -> list[str]:
    """Puts per fdatasync of pastedb's commit groups, for each multi-threaded workload."""
    out = []
    for w in ws:
        opb = w.values("pastedb", "ops_per_barrier")
        if opb and w.params.get("threads", 1) > 1:
            out.append(
                f"{w.title}: pastedb's commit groups averaged {median(opb):.1f} puts per fdatasync."
            )
    return out


def embedded_text(emb: dict[str, Any]) -> str:
    """The printed report of an embedded run."""
    machine, build, cfg = emb["machine"], emb["pastedb_build"], emb["config"]
    physical, v = emb["physical"], emb.get("versions") or {}
    ws = workloads(emb)
    out = [
        "",
        f"pastedb vs LMDB, embedded -- profile {emb['profile']}, {cfg['reps']} interleaved "
        f"repetitions per engine (batched: {cfg['batch_reps']}), medians; ratio = pastedb/lmdb "
        "of the medians",
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, kernel {machine['kernel']}, "
        f"{machine['filesystem'].get('type', '?')} on {machine['filesystem'].get('device', '?')} "
        f"({emb.get('dir') or os.path.dirname(machine['bench_dir'])}); load avg "
        f"{machine['loadavg_start'][0]:.2f} -> {machine['loadavg_end'][0]:.2f}",
        f"pastedb {build['core_dir']} (persist={machine['pastedb_backend'].get('persist')}); "
        f"lmdb py-lmdb {v.get('py_lmdb')} (LMDB {v.get('lmdb_c')})",
    ]
    if build["debug_build_suspected"]:
        out.append(
            f"WARNING: {', '.join(build['debug_build_suspected'])} built with line tracing "
            "(PASTEDB_DEBUG)"
        )
    out.append("")
    if ws:
        out += [render_table(ws), ""]
    fs = physical["fdatasync_4k_pwrite_overwrite_us"]
    fm = physical["fdatasync_1k_mapped_store_us"]
    mc = physical["memcpy_gbps"]
    out += [
        "physical limits, measured in this run between and beside the workloads:",
        f"  fdatasync after a 4 KiB pwrite overwrite     p50 {fs['p50']:>7,.0f} us"
        f"  (p10 {fs['p10']:,.0f}, p90 {fs['p90']:,.0f}; {fs['samples']} samples)",
        f"  fdatasync after a 1 KiB store via MAP_SHARED p50 {fm['p50']:>7,.0f} us"
        f"  (p10 {fm['p10']:,.0f}, p90 {fm['p90']:,.0f}; {fm['samples']} samples)",
        f"  memcpy 64 MiB {mc['64MiB_median']:.1f} GB/s (best {mc['64MiB_best']:.1f}),"
        f" 256 KiB {mc['256KiB_median']:.1f} GB/s (best {mc['256KiB_best']:.1f})",
    ]
    x = physical.get("durable_put_1k_p50_over_fdatasync_p50")
    if x:
        out += [
            "  durable 1 KiB put p50, as a multiple of the fdatasync p50 sampled beside workload 1"
            f" ({x['fdatasync_4k_pwrite_p50_us']:,.0f} us pwrite / "
            f"{x['fdatasync_1k_mapped_store_p50_us']:,.0f} us mapped):",
            f"    pastedb {x['pastedb_x_pwrite_fdatasync']:.2f}x / "
            f"{x['pastedb_x_mapped_fdatasync']:.2f}x, lmdb {x['lmdb_x_pwrite_fdatasync']:.2f}x / "
            f"{x['lmdb_x_mapped_fdatasync']:.2f}x",
        ]
    out += ["  " + line for line in group_commit_lines(ws)]
    judged = [(w, m) for w in ws for m in w.metrics if m.target is not None]
    missed = [
        f"{w.title} {m.label} {w.ratio(m.key):.2f}x < {m.target:g}x"
        for w, m in judged
        if m.met(w.ratio(m.key)) is False
    ]
    out.append(
        f"targets met: {len(judged) - len(missed)}/{len(judged)}"
        + (f"; missed: {'; '.join(missed)}" if missed else "")
    )
    own = emb.get("internals") or {}
    if own:
        out += ["", "pastedb against itself (no peer; same run):"]
        for block in internals_blocks(own):
            out += ["", block]
        mine = [t for t in internals_targets(own) if t["met"] is not None]
        out.append(f"targets met (pastedb alone): {sum(1 for t in mine if t['met'])}/{len(mine)}")
    out.append(f"total time {emb['total_seconds']:.0f}s")
    return "\n".join(out)


# ====================================================================== all
def all_text(doc: dict[str, Any]) -> str:
    """The closing lines of an ``all`` run: every target, and what could not run."""
    judged = [t for t in doc["targets"] if t["met"] is not None]  # None: wrong size to judge
    out = [
        "",
        "targets (pastedb / peer, medians of this run):",
        targets_table(doc),
        f"targets met: {sum(1 for t in judged if t['met'])}/{len(judged)}",
    ]
    out += [f"{na['title']}: {na['why']}" for na in doc.get("not_available") or []]
    out.append(f"total time {doc['total_seconds']:.0f}s")
    return "\n".join(out)


# ====================================================================== markdown
def embedded_markdown(emb: dict[str, Any]) -> str:
    ws = workloads(emb)
    keep = {"ops_s", "keys_s", "p50_us"}
    for w in ws:
        w.metrics = [m for m in w.metrics if m.key in keep or m.target is not None]
    cfg = emb.get("config", {})
    phys = emb.get("physical") or {}
    fs = phys.get("fdatasync_4k_pwrite_overwrite_us") or {}
    x = phys.get("durable_put_1k_p50_over_fdatasync_p50") or {}
    lines = [
        f"*pastedb vs LMDB (py-lmdb, sync=True, metasync=True, one write txn per put), "
        f"{cfg.get('reps')} interleaved repetitions per engine (batched: {cfg.get('batch_reps')}), "
        "medians; ratio = pastedb / LMDB*",
        "",
        render_table(ws, labels={"lmdb": "LMDB"}, markdown=True) if ws else "",
    ]
    if x:
        lines += [
            "",
            f"A durable 1 KiB put's p50 is {x.get('pastedb_x_pwrite_fdatasync', math.nan):.2f} "
            f"fdatasyncs for pastedb and {x.get('lmdb_x_pwrite_fdatasync', math.nan):.2f} for LMDB "
            f"(one fdatasync after a 4 KiB pwrite: p50 {nan(x.get('fdatasync_4k_pwrite_p50_us')):,.0f} us "
            f"beside that workload, {nan(fs.get('p50')):,.0f} us over the whole run).",
        ]
    lines += group_commit_lines(ws)
    own = emb.get("internals") or {}
    if own:
        lines += ["", "*pastedb against itself (no peer; same run):*"]
        for b in internals_blocks(own, markdown=True):
            lines += ["", b]
    return "\n".join(lines)


def machine_line(doc: dict[str, Any]) -> str:
    emb, net = parts(doc)
    m = doc.get("machine") or (emb or {}).get("machine") or (net or {}).get("machine") or {}
    fsys = m.get("filesystem") or {}
    mem = m.get("memory_bytes")
    v = doc.get("versions") or {}
    ev = (emb or {}).get("versions") or {}
    nv = (net or {}).get("versions") or {}
    src = v.get("pastedb_source") or ev.get("pastedb_source") or nv.get("pastedb_source") or {}
    commit = (src.get("commit") or src.get("snapshot_of_commit") or "?")[:10]
    redis = (nv.get("redis_server") or "redis not measured").split(" sha=")[0]
    lmdb = f"LMDB {ev.get('lmdb_c')} (py-lmdb {ev.get('py_lmdb')})" if ev else "LMDB not measured"
    disk = f"{fsys.get('type', '?')} on {fsys.get('device', '?')}" + (
        f", write cache {fsys['write_cache']}" if fsys.get("write_cache") else ""
    )
    return (
        f"{m.get('cpu_model', '?')}, {m.get('cores')} cores"
        + (f", {mem / 2**30:.0f} GiB" if mem else "")
        + f", kernel {m.get('kernel')}, {disk}; pastedb {v.get('pastedb') or ev.get('pastedb') or nv.get('pastedb')}"
        + f" at {commit}{' (dirty tree)' if src.get('dirty') else ''}, {lmdb}, {redis}"
    )


def markdown(doc: dict[str, Any], json_rel: str, chart_rel: str | None) -> str:
    emb, net = parts(doc)
    total = doc.get("total_seconds")
    out = [
        f"_Generated by `python -m bench render` from [`{os.path.basename(json_rel)}`]({json_rel})"
        f" (`python -m bench`, profile {doc.get('profile')}, started {doc.get('started', '?')}"
        + (f", {total / 60:.1f} min" if total else "")
        + "). **One machine**: "
        + machine_line(doc)
        + ". Absolute figures are this machine's; the claims are the ratios._",
        "",
    ]
    if chart_rel:
        out += [
            f"![pastedb / peer ratios, log scale; 1.0 = parity; red ticks = targets]({chart_rel})",
            "",
        ]
    out += [
        "**Targets** (from this run's medians; not met is not rounded up):",
        "",
        targets_table(doc, True),
        "",
    ]
    if emb:
        out += ["**Embedded** (`python -m bench embedded`)", "", embedded_markdown(emb), ""]
    if net:
        out += ["**Network** (`python -m bench network`)", ""]
        for b in network_blocks(net, markdown=True):
            if b:
                out += [b, ""]
    elif doc.get("not_available"):
        # the embedded section already says what of it is not available
        said = {na["id"] for na in internals_not_available((emb or {}).get("internals") or {})}
        for na in doc["not_available"]:
            if na.get("id") not in said:
                out += [f"{na['title']}: {na['why']}", ""]
    return "\n".join(out).rstrip() + "\n"


def update_readme(path: str, section: str) -> None:
    with open(path) as f:
        text = f.read()
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers; add them where the section goes")
    new = text[: i + len(BEGIN)] + "\n" + section + text[j:]
    if new != text:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, path)


# ====================================================================== chart
def chart(doc: dict[str, Any], path: str) -> bool:
    """Ratios against the peers as horizontal bars from 1.0 on a log scale,
    targets as red ticks.  False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, NullLocator
    except ImportError:
        return False
    emb, net = parts(doc)
    panels: list[
        tuple[str, list[str], list[tuple[str, list[float], str]], list[float | None], Any]
    ] = []
    ws = workloads(emb)
    if ws:
        main_metric = [w.metrics[0] for w in ws]
        panels.append(
            (
                "Embedded: pastedb / LMDB (throughput)",
                [f"{w.title} ({m.label})" for w, m in zip(ws, main_metric, strict=True)],
                [
                    (
                        "pastedb",
                        [w.ratio(m.key) for w, m in zip(ws, main_metric, strict=True)],
                        "#4c72b0",
                    )
                ],
                [m.target for m in main_metric],
                None,
            )
        )
    idx = ((emb or {}).get("internals") or {}).get("index") or {}
    iws = [Workload.from_json(w) for w in idx.get("workloads") or []]
    if iws:
        rows = [(w, m) for w in iws for m in w.metrics if m.key != "mean_us"]
        panels.append(
            (
                'pastedb index="lazy" / index="eager" (per-put latency; lower is better)',
                [f"{w.title} ({m.label.replace(' (lower better)', '')})" for w, m in rows],
                [("lazy / eager", [w.ratio(m.key) for w, m in rows], "#8172b2")],
                [m.target for _w, m in rows],
                None,
            )
        )
    if net and not net.get("skipped"):
        ws = workloads(net)
        if ws:
            panels.append(
                (
                    "Network: pastedb serve / redis-server appendfsync always (req/s)",
                    [w.title for w in ws],
                    [
                        ("pastedb (zero-copy, default)", [w.ratio("rps") for w in ws], "#4c72b0"),
                        (
                            "pastedb --copy",
                            [w.ratio_of("pastedb-copy", "redis-always", "rps") for w in ws],
                            "#8fb0d8",
                        ),
                        (
                            "redis everysec (reference)",
                            [w.ratio_of("redis-everysec", "redis-always", "rps") for w in ws],
                            "#bbbbbb",
                        ),
                    ],
                    [w.metrics[0].target for w in ws],
                    None,
                )
            )
        zc = workloads(net, "zerocopy")
        if zc:
            sizes = sorted({w.params["value_bytes"] for w in zc})
            by = {(w.params["fs"], w.params["value_bytes"]): w for w in zc}
            series = []
            zc_path = (net.get("receive") or {}).get("zero-copy", "zero-copy")
            for fs, mode, colour in (
                ("tmpfs", "zero-copy", "#55a868"),
                ("tmpfs", "recv-mapping", "#a6d8b0"),
                ("disk", "zero-copy", "#c44e52"),
                ("disk", "recv-mapping", "#e8a5a7"),
            ):
                ws_fs = [by.get((fs, s)) for s in sizes]
                if not any(w is not None and mode in w.engines for w in ws_fs):
                    continue
                name = f"{fs}: {zc_path if mode == 'zero-copy' else 'recv() into mapping'}"
                series.append(
                    (
                        name,
                        [
                            w.ratio_of(mode, "copy", "rps") if w is not None else math.nan
                            for w in ws_fs
                        ],
                        colour,
                    )
                )
            panels.append(
                (
                    "Zero-copy receive / --copy, SET at 50 clients (req/s); shaded: the paper's gain",
                    [f"SET {s // 1024} KiB" for s in sizes],
                    series,
                    [None] * len(sizes),
                    PAPER,
                )
            )
    if not panels:
        return False
    allv = [v for p in panels for _l, vs, _c in p[2] for v in vs if v == v and v > 0]
    allv += [t for p in panels for t in p[3] if t]
    lo = min([0.25, *allv]) / 1.8
    hi = max([4.0, *allv]) * 1.6
    heights = [max(2.0, 0.42 * len(p[1]) * max(1, len(p[2])) ** 0.6 + 0.9) for p in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(11, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if lo <= t <= hi]
    for ax, (title, labels, series, tgts, band) in zip(axes[:, 0], panels, strict=True):
        n, k = len(labels), len(series)
        bh = 0.8 / k
        for si, (name, vals, colour) in enumerate(series):
            ys = [i - 0.4 + bh * (si + 0.5) for i in range(n)]
            for y, v in zip(ys, vals, strict=True):
                if not (v == v and v > 0):
                    ax.text(1.02, y, "n/a", va="center", fontsize=8, color="#666666")
                    continue
                ax.barh(
                    y,
                    v - 1,
                    zorder=2,
                    left=1,
                    height=bh * 0.9,
                    color=colour,
                    label=name if y == ys[0] else None,
                )
                ax.text(
                    v * (1.04 if v >= 1 else 0.96),
                    y,
                    f"{v:.2f}x",
                    va="center",
                    ha="left" if v >= 1 else "right",
                    fontsize=8,
                )
        for i, t in enumerate(tgts):
            if t:
                ax.plot(
                    [t, t],
                    [i - 0.45, i + 0.45],
                    color="#d62728",
                    lw=2.5,
                    solid_capstyle="butt",
                    label="target" if i == next(j for j, x in enumerate(tgts) if x) else None,
                )
        if band:
            ax.axvspan(
                band[0],
                band[1],
                color="#f2d680",
                alpha=0.45,
                lw=0,
                zorder=0,
                label=f"paper: +{(band[0] - 1) * 100:.0f}-{(band[1] - 1) * 100:.0f} %",
            )
        ax.axvline(1.0, color="black", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{t:g}x" for t in ticks])
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=9)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=11, loc="left")
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.suptitle(
        f"pastedb against its peers ({doc.get('profile')} profile, {doc.get('started', '')[:10]}); "
        "bars start at 1.0 = parity; one machine",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ====================================================================== driver
def newest_results() -> str | None:
    files = sorted(glob.glob(os.path.join(RESULTS_DIR, "all-*.json")))
    full = [f for f in files if not os.path.basename(f).startswith(("all-quick-", "all-smoke-"))]
    pool = full or files
    return pool[-1] if pool else None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "json", nargs="?", help="results file (default: the newest full bench/results/all-*.json)"
    )
    p.add_argument(
        "--chart",
        default=os.path.join(RESULTS_DIR, "chart.png"),
        help="where the chart goes (default %(default)s)",
    )
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument(
        "--readme",
        default=os.path.join(REPO, "README.md"),
        help="README whose bench section is rewritten (default %(default)s)",
    )
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.add_argument("--print", action="store_true", help="print the generated Markdown")


def render(doc: dict[str, Any], json_path: str, args: argparse.Namespace) -> int:
    chart_rel = None
    base = os.path.dirname(os.path.abspath(args.readme))
    if not args.no_chart:
        if chart(doc, args.chart):
            chart_rel = os.path.relpath(os.path.abspath(args.chart), base)
            print(f"chart written to {args.chart}")
        else:
            print("no chart: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    md = markdown(doc, os.path.relpath(os.path.abspath(json_path), base), chart_rel)
    if not args.no_readme:
        update_readme(args.readme, md)
        print(f"{args.readme}: bench section rewritten")
    if args.print:
        print(md)
    return 0


def main(args: argparse.Namespace) -> int:
    path = args.json or newest_results()
    if not path:
        print("no results file: run `python -m bench` first", file=sys.stderr)
        return 2
    return render(load(path), path, args)
