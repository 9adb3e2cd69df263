"""The ``fitbridge`` command line (also ``python -m fitbridge``).

Bad input (a spec error, an unknown option or method, a missing file) prints ONE line,
``fitbridge: error: ...``, on stderr and exits with status 2; a run interrupted with Ctrl-C
exits with 130 (``run`` and ``explore`` then continue from their logs with ``--resume``).
Progress goes to stderr, the final summary to stdout; ``--quiet`` silences both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  fitbridge run examples/specs/rww_fit.yaml
  fitbridge run examples/specs/rww_fit.yaml --quick --out /tmp/smoke
  fitbridge run my.yaml --set integration.duration=60000 --set optimize[0].budget=20
  fitbridge run my.yaml --out runs/a --resume      # after Ctrl-C or a killed job: continue from runs/a/logs
  fitbridge explore examples/specs/rww_regional.yaml
  fitbridge compare examples/specs/compare_noisy.yaml --methods optax:adam cma nevergrad:TBPSA --restarts 2
  fitbridge simulate examples/specs/rww_fit.yaml --params results/rww_fit-1a2b3c4d/params.json
  fitbridge methods
  fitbridge datasets

Each command on a SPEC writes a results folder (default results/<spec name>-<hash8>): spec.yaml
(the canonical spec), manifest.json (versions, spec hash, seed, wall time), summary/history tables
(CSV, and Parquet when pyarrow is installed), params.json (fitted parameters), figures/*.png,
and for run and explore logs/ (every evaluation as it finished: what --resume continues from).
The spec format is documented in fitbridge/_spec.py and examples/specs/.
"""


class UsageError(Exception):
    """An argparse error, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D102 (one line instead of usage + message)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _spec_command(sub, name: str, help_: str, description: str, resume: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="experiment spec (YAML or JSON file)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/<spec name>-<hash8>)")
    p.add_argument("--quick", action="store_true",
                   help="SMOKE SETTING: ~40 TRs of simulation, 4 evaluations per stage and 4 explored points; "
                        "checks the pipeline, it is not a fit (recorded in the manifest and the hash)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field before validation, e.g. integration.duration=60000 or "
                        "optimize[0].budget=20 (VALUE is read as YAML; repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary output")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in the results folder (--out, or the default) from its "
                            "logs/: explored chunks and logged optimizer evaluations are read back, only the "
                            "missing ones are computed, and the results equal an uninterrupted run's; use the "
                            "same SPEC, --set and --quick as the interrupted run")
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="fitbridge", description="Fit whole-brain models to fMRI functional connectivity "
                     "from YAML experiment specs.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fitbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    _spec_command(sub, "run", "run a spec: exploration, optimization stages, held-out validation",
                  "Run the spec end to end: exploration (if any), every optimization stage in order, "
                  "then the FC r of the fitted point on the train and held-out subjects.", resume=True)
    _spec_command(sub, "explore", "evaluate the spec's exploration (grid or sampler) only",
                  "Evaluate the points of the spec's exploration section as vmapped batches "
                  "(execution.precision, workers and dask_address apply) and report the best point.",
                  resume=True)
    cmp_ = _spec_command(sub, "compare", "compare optimizers on the spec's problem",
                         "Run several optimizers with the same budget on the problem of the spec's first "
                         "stage (from the best explored point when the spec explores), and tabulate loss, "
                         "FC r (train and held-out), evaluations and wall time.")
    cmp_.add_argument("--methods", nargs="+", required=True, metavar="METHOD",
                      help="optimizers, e.g. scipy:L-BFGS-B cma nevergrad:TBPSA (see `fitbridge methods`)")
    cmp_.add_argument("--budget", type=_positive_int, metavar="N",
                      help="evaluations per run (default: the first stage's budget)")
    cmp_.add_argument("--restarts", type=_positive_int, default=1, metavar="R",
                      help="starting points per method (restart 0 at the start, the others Sobol; default 1)")
    cmp_.add_argument("--seeds", type=_nonnegative_int, nargs="+", metavar="S",
                      help="optimizer seeds (default: execution.seed)")
    cmp_.add_argument("--start", choices=("auto", "explore", "init"), default="auto",
                      help="start from the best explored point (explore), the spec's values (init), or "
                           "explore when the spec has an exploration section (auto, default)")
    sim = _spec_command(sub, "simulate", "simulate at the spec's values (or a run's fitted parameters)",
                        "Simulate BOLD at the spec's parameter values, or at the values of a run's "
                        "params.json, and report the FC agreement; writes bold.npy and fc_sim.npy.")
    sim.add_argument("--params", metavar="JSON", help="params.json of a run (its `values` are used)")
    sub.add_parser("datasets", help="list the embedded datasets", description="List the embedded datasets.")
    meth = sub.add_parser("methods", help="list optimizer backends and their capability flags",
                          description="List the registered optimizers with their capability flags.")
    meth.add_argument("--library", metavar="NAME", help="only backends of this library (scipy, cma, ...)")
    return parser


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# ------------------------------------------------------------------------------ commands
def _overrides(args) -> dict:
    from ._spec import parse_override

    return dict(parse_override(item) for item in args.overrides)


def _common(args, argv) -> dict:
    common = {"overrides": _overrides(args), "quick": args.quick, "out": args.out, "quiet": args.quiet,
              "argv": ["fitbridge", *argv]}
    if getattr(args, "resume", False):
        common["resume"] = True
    return common


def _report(args, result, lines: list[str]) -> None:
    if args.quiet:
        return
    for line in lines:
        print(line)
    print(f"results: {result.out}/")


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _cmd_run(args, argv) -> int:
    from ._runner import run_spec

    result = run_spec(args.spec, **_common(args, argv))
    best = result.summary[result.summary["fitted"]].iloc[0]
    smoke = " [--quick smoke run: not a fit]" if args.quick else ""
    _report(args, result, [
        result.summary.drop(columns=["message"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"),
        f"fitted: {best['stage']} ({best['method']}), FC r train = {_fmt(best['fc_r_train'])}, held-out group = "
        f"{_fmt(best['fc_r_heldout'])}, held-out subjects (mean) = {_fmt(best['fc_r_heldout_subjects'])}{smoke}"])
    return 0


def _cmd_explore(args, argv) -> int:
    from ._runner import explore_spec

    result = explore_spec(args.spec, **_common(args, argv))
    row = result.summary.iloc[0]
    _report(args, result, [f"explored {row['nfev']} points: best FC r = {_fmt(row['fc_r_train'])} "
                           f"(held-out {_fmt(row['fc_r_heldout'])})"])
    return 0


def _cmd_compare(args, argv) -> int:
    from ._runner import compare_spec

    result = compare_spec(args.spec, args.methods, budget=args.budget, restarts=args.restarts,
                          seeds=args.seeds, start=args.start, **_common(args, argv))
    cols = ["method", "restart", "seed", "fun", "fc_r_train", "fc_r_heldout", "nfev", "wall_time"]
    _report(args, result, [result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")])
    return 0


def _cmd_simulate(args, argv) -> int:
    from ._runner import simulate_spec

    result = simulate_spec(args.spec, params=args.params, **_common(args, argv))
    row = result.summary.iloc[0]
    _report(args, result, [f"simulated FC r = {_fmt(row['fc_r_train'])} (held-out {_fmt(row['fc_r_heldout'])})"])
    return 0


def _cmd_datasets(args, argv) -> int:
    from . import datasets

    rows = []
    for name in datasets.available():
        ds = datasets.load(name)
        frames = "-" if ds.bold is None else str(ds.bold.shape[1])
        rows.append((name, str(ds.n_regions), str(len(ds.subjects)), frames, f"{ds.tr:g}" if ds.tr else "-"))
    print(_table(("name", "regions", "subjects", "frames", "TR (ms)"), rows))
    return 0


def _cmd_methods(args, argv) -> int:
    import importlib.util

    from . import backends

    infos = [i for i in backends.available() if args.library is None or i.library == args.library]
    if not infos:
        libraries = sorted({i.library for i in backends.available()})
        raise UsageError(f"--library: expected one of {libraries}, got {args.library!r}")
    flag = lambda b: "yes" if b else "-"  # noqa: E731
    rows = [(i.name, i.library, flag(importlib.util.find_spec(i.library) is not None), flag(i.needs_jac),
             flag(i.supports_bounds), flag(i.needs_bounds), flag(i.is_global), flag(i.batched),
             flag(i.uses_hessian)) for i in infos]
    print(_table(("method", "library", "installed", "gradient", "bounds", "needs bounds", "global", "batched",
                  "hessian"), rows))
    print("nevergrad:<name> accepts every Nevergrad optimizer, optax:<name> every optax optimizer taking a "
          "learning rate; the rows above are examples.")
    return 0


def _table(header, rows) -> str:
    widths = [max(len(str(r[j])) for r in (header, *rows)) for j in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


COMMANDS = {"run": _cmd_run, "explore": _cmd_explore, "compare": _cmd_compare, "simulate": _cmd_simulate,
            "datasets": _cmd_datasets, "methods": _cmd_methods}


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fitbridge`` console script; returns the exit status."""
    from ._errors import FitbridgeError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)
    except (UsageError, FitbridgeError) as err:
        print(f"fitbridge: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable --out, a full disk ...
        where = f" ({err.filename})" if err.filename else ""
        print(f"fitbridge: error: {_one_line(err.strerror or err)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = args is not None and args.command in ("run", "explore")
        hint = "; rerun the same command with --resume to continue from its logs" if resumable else ""
        print(f"fitbridge: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
