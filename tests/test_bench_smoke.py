"""The benchmark suite still runs: ``python -m bench --smoke`` does a handful
of operations per workload, writes its JSON, and ``python -m bench render``
turns that into a chart and a README section.  Nothing here judges speed.

Run twice: with redis-server/redis-benchmark hidden from PATH (the network
part must be skipped with install instructions, not fail) and, where they
are installed, with them.  And the committed results files still render,
the newest full one into exactly the README's bench section.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120  # a stuck run fails the test instead of hanging the session


def run_bench(args: list[str], tmp_path: Path, path_env: str | None = None):
    env = dict(os.environ)
    if path_env is not None:
        env["PATH"] = path_env
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def smoke(tmp_path: Path, path_env: str | None = None) -> dict:
    out = tmp_path / "smoke.json"
    r = run_bench(["--smoke", "--json", str(out), "--dir", str(tmp_path)], tmp_path, path_env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "targets met:" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["suite"] == "all" and doc["profile"] == "smoke"
    assert doc["embedded"]["workloads"], "no embedded workloads measured"
    for w in doc["embedded"]["workloads"]:
        for engine, reps in w["repetitions"].items():
            assert reps, f"{w['id']}: no repetition of {engine}"
    check_internals(doc["embedded"]["internals"], r.stdout)
    rd = doc["readers"]["workloads"]               # readers beside a writer, pastedb vs LMDB
    assert {x["id"] for x in rd} == {"reader_get", "reader_scan"}
    assert all(reps for x in rd for reps in x["repetitions"].values())
    assert doc["machine"]["cpu_model"] and doc["machine"]["kernel"]
    assert doc["versions"]["pastedb"]
    return doc


def check_internals(own: dict, stdout: str) -> None:
    """pastedb against itself (bench/internals.py): lazy vs eager indexing
    where the build has index=, else said to be not available; open time
    after a clean close and after kill -9; space after overwrites."""
    idx = own["index"]
    if idx["available"]:
        ids = {w["id"] for w in idx["workloads"]}
        assert {"index_durable_put", "index_nosync_put"} <= ids, ids
        for w in idx["workloads"]:
            assert set(w["repetitions"]) == {"lazy", "eager"}
            for mode, reps in w["repetitions"].items():
                assert reps and all(x["p99_us"] > 0 for x in reps), (w["id"], mode, reps)
    else:
        assert "lazy vs eager indexing: not available" in stdout
    op = own["open"]
    assert op["clean"]["samples"] and all(s["found"] for s in op["clean"]["samples"])
    assert [t["tail_written"] for t in op["crash"]] == [0, 100]
    for t in op["crash"]:
        assert t["samples"] and all(
            s["child"]["written"] == t["tail_written"] for s in t["samples"]
        )
        assert t["open_s_median"] > 0
    sp = own["space"]
    assert sp["phases"]["after_checkpoint"]["stats"]["live_bytes"] > 0
    assert sp["phases"]["after_close"]["disk"]["data_allocated"] > 0


def render(doc_path: Path, tmp_path: Path) -> str:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- bench:begin -->\nold\n<!-- bench:end -->\nafter\n")
    chart = tmp_path / "chart.png"
    r = run_bench(
        ["render", str(doc_path), "--chart", str(chart), "--readme", str(readme)], tmp_path
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- bench:begin -->\n")
    assert text.endswith("<!-- bench:end -->\nafter\n")
    assert "old" not in text and "**Targets**" in text
    assert "open + first get" in text and "space after" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart" in r.stderr
    else:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return text


def test_smoke_without_redis(tmp_path):
    # An empty PATH: no redis-server, no redis-benchmark (nor git; the suite
    # must cope with that too).  Python itself is started by absolute path.
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    doc = smoke(tmp_path, path_env=str(empty))
    net = doc["network"]
    assert net["skipped"] and "apt-get install redis-server redis-tools" in net["skipped"]
    assert not net.get("workloads")
    assert all(t["suite"] == "embedded" for t in doc["targets"])
    text = render(tmp_path / "smoke.json", tmp_path)
    assert "network benchmarks skipped" in text


@pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-benchmark")),
    reason="redis-server / redis-benchmark not installed (bench/install-peers.sh)",
)
def test_smoke_with_redis(tmp_path):
    doc = smoke(tmp_path)
    net = doc["network"]
    assert not net.get("skipped")
    assert not net["problems"], net["problems"]
    ids = {w["id"] for w in net["workloads"]}
    assert {"net_set_c1", "net_set_c50", "net_set_c50_p16", "net_get_c50"} <= ids
    for w in net["workloads"] + net["zerocopy"]:
        for engine, reps in w["repetitions"].items():
            assert reps and all(r.get("rps", 0) > 0 for r in reps), (w["id"], engine, reps)
    assert net["physical"]["ping"]["c1"]["p50_us"] > 0
    assert {t["suite"] for t in doc["targets"]} == {"embedded", "network"}
    text = render(tmp_path / "smoke.json", tmp_path)
    assert "zero-copy receive vs --copy" in text


def test_committed_results_render_and_reproduce_the_readme_section(tmp_path):
    """Every committed results file still renders, and the README's bench
    section is what `python -m bench render` makes of the newest full one
    (the README links it), byte for byte."""
    results = sorted((REPO_ROOT / "bench" / "results").glob("*.json"))
    assert results, "no committed results"
    for path in results:
        r = run_bench(["render", str(path), "--no-chart", "--no-readme", "--print"], tmp_path)
        assert r.returncode == 0, (path.name, r.stdout[-3000:] + r.stderr[-3000:])
        assert "**Targets**" in r.stdout, path.name
    pytest.importorskip("matplotlib")                   # without it the chart link is left out
    full = [p for p in results if p.name.startswith("all-")
            and not p.name.startswith(("all-quick-", "all-smoke-"))]
    newest = full[-1]
    # the same layout in tmp_path, so that the section's relative links come out the same
    (tmp_path / "bench" / "results").mkdir(parents=True)
    shutil.copy(newest, tmp_path / "bench" / "results" / newest.name)
    readme = REPO_ROOT / "README.md"
    shutil.copy(readme, tmp_path / "README.md")
    r = run_bench(["render", str(tmp_path / "bench" / "results" / newest.name),
                   "--chart", str(tmp_path / "bench" / "results" / "chart.png"),
                   "--readme", str(tmp_path / "README.md")], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "README.md").read_text() == readme.read_text(), \
        f"the README's bench section is not what {newest.name} renders to: run `python -m bench render`"
