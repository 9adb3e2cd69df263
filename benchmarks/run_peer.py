"""Run the peer (tvboptim 0.4) side of the benchmark in its own interpreter.

Standard library only: fitbridge's environment never imports tvboptim. The peer lives in a
separate virtual environment (its pins must not touch fitbridge's)::

    python3 -m venv .peer && .peer/bin/pip install "tvboptim==0.4.*"

Each measurement runs in its own subprocess of ``peer_tvboptim_rww.py`` so that peak memory
is per measurement: section ``a`` (jitted forward loss) alone, then section ``b`` (reverse and
forward-mode ``value_and_grad`` w.r.t. (G, w)) alone, then, if asked, one process per grid
configuration of section ``c`` (``ParallelExecution`` on an n x n grid).

Use from Python::

    from run_peer import run_peer, export_peer_data
    peer = run_peer(sections="a,b")          # dict, or None when the peer is not installed
    export_peer_data("/tmp/dk_average.npz")  # same connectome and empirical FC as the peer

or from the command line::

    python benchmarks/run_peer.py --sections a,b,c --grid-configs 2x4,8x1 --out peer.json

Without a usable peer interpreter it prints why and returns None (exit status 0 on the
command line), so the fitbridge benchmark can run with the peer column skipped.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import make_log, make_workdir, run_json  # noqa: E402  (standard library only)

REPO = HERE.parent
PEER_SCRIPT = HERE / "peer_tvboptim_rww.py"
PEER_DATA_SCRIPT = HERE / "_peer_data.py"
DEFAULT_PEER_PYTHONS = (REPO / ".peer" / "bin" / "python", Path("/work/peer/bin/python"))
ENV_VAR = "FITBRIDGE_PEER_PYTHON"


log = make_log("[peer]")


def find_peer_python(peer_python=None):
    """The peer interpreter: the argument, else $FITBRIDGE_PEER_PYTHON, else the defaults."""
    if peer_python:
        return Path(peer_python)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    for cand in DEFAULT_PEER_PYTHONS:
        if cand.exists():
            return cand
    return DEFAULT_PEER_PYTHONS[0]


def check_peer(peer_python=None):
    """(path, versions dict) if tvboptim imports in the peer interpreter, else (path, None)."""
    py = find_peer_python(peer_python)
    if not py.exists():
        log(f"peer column skipped: no peer interpreter at {py}. Create one with\n"
            f"    python3 -m venv .peer && .peer/bin/pip install 'tvboptim==0.4.*'\n"
            f"  or pass --peer-python PATH (or set {ENV_VAR}).")
        return py, None
    code = ("import json, jax, tvboptim; print(json.dumps({'tvboptim': "
            "getattr(tvboptim, '__version__', None), 'jax': jax.__version__}))")
    try:
        cp = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"peer column skipped: {py} could not be run ({e!r})")
        return py, None
    if cp.returncode != 0:
        log(f"peer column skipped: tvboptim is not importable with {py}:\n"
            + cp.stderr.strip()[-800:])
        return py, None
    versions = json.loads(cp.stdout.strip().splitlines()[-1])
    if not str(versions.get("tvboptim", "")).startswith("0.4"):
        log(f"warning: the peer script targets tvboptim 0.4.x, found {versions.get('tvboptim')}")
    return py, versions


def _run_section(py, section, extra, n_dev, timeout, workdir, label=None):
    out = Path(workdir) / f"peer_{label or section}.json"
    cmd = [str(py), str(PEER_SCRIPT), "--sections", section, "--out", str(out)] + extra
    env = dict(os.environ)
    env["PEER_N_DEV"] = str(n_dev)
    log(f"section {section}: {' '.join(cmd[2:])} (PEER_N_DEV={n_dev})")

    def fail(rc, wall, tail):
        log(f"section {section} failed (rc={rc}, {wall:.0f} s):\n{tail}")
        return {"error": f"rc={rc}", "output_tail": tail, "process_wall_s": wall}

    return run_json(cmd, out, workdir, timeout, fail, env=env, rss="process_peak_rss_mb")


def _timing(d):
    if not d:
        return None
    return {
        "first_call_s": d["first_call_s"],
        "compile_s": d["first_call_s"] - d["steady_median_s"],
        "steady_s": d["steady_median_s"],
        "steady_all_s": d["steady_all_s"],
        "peak_rss_mb": d.get("peak_rss_mb"),
        "loss": d.get("loss", d.get("loss_rmse_init")),
    }


def run_peer(sections="a,b", peer_python=None, t1=90_000.0, dt=4.0, reps=3, x32=False,
             grid_n=8, grid_configs=((2, 4),), ab_devices=1, timeout=1800, keep_dir=None):
    """Run the peer workload; return a results dict, or None if the peer is unavailable.

    sections: any of "a" (forward), "b" (gradients), "c" (grid), comma separated; each runs
        in its own process, in that order.
    grid_configs: (n_pmap, n_vmap) pairs for section c, one process each, with as many
        forced host devices as n_pmap. (2, 4) is tvboptim's best setting on 2 cores, (8, 1)
        its tutorial setting.
    ab_devices: forced host device count for sections a and b (they use one device).
    """
    py, versions = check_peer(peer_python)
    if versions is None:
        return None
    if not PEER_SCRIPT.exists():
        log(f"peer column skipped: {PEER_SCRIPT} is missing")
        return None
    secs = [s.strip() for s in str(sections).split(",") if s.strip()]
    if t1 <= 22_000.0:
        # the peer drops 20 BOLD frames (TR 1 s) before FC: with t1 <= ~21 s no frame is
        # left, the loss is NaN and XLA removes the simulation (sub-millisecond "timings")
        log(f"warning: t1={t1} ms leaves no BOLD frames after the 20 s skip; timings are void")
    common = ["--t1", str(t1), "--dt", str(dt), "--reps", str(reps)] + (["--x32"] if x32 else [])
    out = {
        "peer_python": str(py),
        "versions": versions,
        "config": {"t1_ms": t1, "dt_ms": dt, "reps": reps,
                   "dtype": "float32" if x32 else "float64", "sections": secs},
        "sections": {},
    }
    summary = {"peak_rss_mb": {}}
    workdir = make_workdir(keep_dir, "fitbridge_peer_")

    if "a" in secs:
        r = _run_section(py, "a", common, ab_devices, timeout, workdir)
        out["sections"]["a"] = r
        if "a_forward" in r:
            out["versions"] = r.get("versions", versions)
            fwd = _timing(r["a_forward"])
            fwd["fc_r_upper_init"] = r["a_forward"].get("fc_r_upper_init")
            fwd["eager_unjitted_call_s"] = r["a_forward"].get("eager_unjitted_call_s")
            out["forward"] = fwd
            summary["compile_forward_s"] = fwd["compile_s"]
            summary["forward_s"] = fwd["steady_s"]
            summary["peak_rss_mb"]["a_forward"] = r.get("peak_rss_mb_final")
    if "b" in secs:
        r = _run_section(py, "b", common, ab_devices, timeout, workdir)
        out["sections"]["b"] = r
        if "b_grad_rev" in r:
            rev, fwdm = _timing(r["b_grad_rev"]), _timing(r.get("b_grad_fwd"))
            rev["grad"] = {"G": r["b_grad_rev"]["dG"], "w": r["b_grad_rev"]["dw"]}
            out["grad_reverse"] = rev
            out["grad_reverse_vg_of_jit"] = _timing(r.get("b_grad_rev_vg_of_jit"))
            summary["compile_grad_reverse_s"] = rev["compile_s"]
            summary["grad_reverse_s"] = rev["steady_s"]
            # ru_maxrss is cumulative: the reverse figure is taken right after the reverse
            # runs (setup + reverse); the forward-mode figure includes both.
            summary["peak_rss_mb"]["b_grad_reverse"] = rev["peak_rss_mb"]
            if fwdm:
                fwdm["grad"] = {"G": r["b_grad_fwd"]["dG"], "w": r["b_grad_fwd"]["dw"]}
                out["grad_forward_mode"] = fwdm
                summary["compile_grad_forward_mode_s"] = fwdm["compile_s"]
                summary["grad_forward_mode_s"] = fwdm["steady_s"]
                summary["peak_rss_mb"]["b_all"] = r.get("peak_rss_mb_final")
    if "c" in secs:
        out["grid"] = {}
        for n_pmap, n_vmap in grid_configs:
            extra = common + ["--grids", str(grid_n), "--seq", "", "--n_pmap", str(n_pmap),
                              "--n_vmap", str(n_vmap)]
            key = f"{grid_n}x{grid_n}_npmap{n_pmap}_nvmap{n_vmap}"
            r = _run_section(py, "c", extra, n_pmap, timeout, workdir, label=f"c_{key}")
            out["sections"][f"c_{key}"] = r
            for k, v in r.get("c_grid", {}).items():
                if k.startswith("parallel_"):
                    out["grid"][key] = {
                        "n_evals": v["n_evals"],
                        "first_run_s": v["first_run_s"],
                        "second_run_s": v["second_run_s"],
                        "evals_per_s_first": v["evals_per_s_first"],
                        "evals_per_s": v["evals_per_s_steady"],
                        "loss_min": v["loss_min"],
                        "best": v.get("best"),
                        "peak_rss_mb": v["peak_rss_mb"],
                    }
                    summary.setdefault("grid_evals_per_s", {})[key] = v["evals_per_s_steady"]
                    summary["peak_rss_mb"][f"c_{key}"] = v["peak_rss_mb"]
    out["summary"] = summary
    out["warnings"] = sorted({w for r in out["sections"].values() for w in r.get("warnings", [])})
    out["workdir"] = str(workdir)
    return out


def export_peer_data(path, peer_python=None, timeout=300):
    """Write tvboptim's dk_average workload data to `path` (.npz); return it, or None."""
    py, versions = check_peer(peer_python)
    if versions is None:
        return None
    cp = subprocess.run([str(py), str(PEER_DATA_SCRIPT), str(path)], capture_output=True,
                        text=True, timeout=timeout)
    if cp.returncode != 0:
        log(f"exporting the peer data failed:\n{cp.stderr.strip()[-800:]}")
        return None
    return Path(path)


def format_summary(res):
    """Short human-readable lines for a run_peer() result."""
    if res is None:
        return "tvboptim: skipped (peer not installed)"
    s = res["summary"]
    v = res["versions"]
    lines = [f"tvboptim {v.get('tvboptim')} / jax {v.get('jax')}, {res['config']['dtype']}"]
    for key, label in (("forward_s", "forward (steady)"),
                       ("compile_forward_s", "forward compile"),
                       ("grad_reverse_s", "reverse value_and_grad"),
                       ("compile_grad_reverse_s", "reverse compile"),
                       ("grad_forward_mode_s", "forward-mode value_and_grad"),
                       ("compile_grad_forward_mode_s", "forward-mode compile")):
        if key in s:
            lines.append(f"  {label:30s} {s[key]:8.3f} s")
    for key, val in s.get("grid_evals_per_s", {}).items():
        lines.append(f"  grid {key:25s} {val:8.2f} evals/s")
    for key, val in s["peak_rss_mb"].items():
        if val is not None:
            lines.append(f"  peak RSS {key:21s} {val:8.0f} MB")
    return "\n".join(lines)


def _parse_configs(text):
    cfgs = []
    for item in text.split(","):
        if item.strip():
            p, v = item.lower().split("x")
            cfgs.append((int(p), int(v)))
    return tuple(cfgs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer-python", default=None,
                    help=f"peer interpreter (default: .peer/bin/python in the repo, else "
                         f"/work/peer/bin/python; or ${ENV_VAR})")
    ap.add_argument("--sections", default="a,b", help="a (forward), b (gradients), c (grid)")
    ap.add_argument("--t1", type=float, default=90_000.0, help="simulated ms")
    ap.add_argument("--dt", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--x32", action="store_true", help="float32 instead of float64")
    ap.add_argument("--grid-n", type=int, default=8, help="grid points per axis (section c)")
    ap.add_argument("--grid-configs", default="2x4",
                    help="comma-separated n_pmap x n_vmap settings for section c, e.g. 2x4,8x1")
    ap.add_argument("--ab-devices", type=int, default=1,
                    help="forced host device count for sections a, b")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    ap.add_argument("--keep-dir", default=None, help="keep the raw section JSONs here")
    ap.add_argument("--out", default=None, help="write the full result dict as JSON here")
    ap.add_argument("--export-data", default=None, metavar="NPZ",
                    help="only export the dk_average workload data to this .npz and exit")
    a = ap.parse_args(argv)
    if a.export_data:
        p = export_peer_data(a.export_data, a.peer_python)
        print(p if p else "peer data not exported")
        return None
    res = run_peer(sections=a.sections, peer_python=a.peer_python, t1=a.t1, dt=a.dt,
                   reps=a.reps, x32=a.x32, grid_n=a.grid_n,
                   grid_configs=_parse_configs(a.grid_configs), ab_devices=a.ab_devices,
                   timeout=a.timeout, keep_dir=a.keep_dir)
    print(format_summary(res))
    if res is not None:
        if a.out:
            Path(a.out).write_text(json.dumps(res, indent=1))
            print(f"wrote {a.out}")
        else:
            print(json.dumps(res["summary"], indent=1))
    return res


if __name__ == "__main__":
    main()
    sys.exit(0)
