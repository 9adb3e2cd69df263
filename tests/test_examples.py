"""The README's main job runs end to end in its shortened form and writes what it promises."""

import importlib.util
import json
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def example(name: str):
    """Import ``examples/<name>.py`` as a module (its ``main(argv)`` runs the example)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_hcp_quick(tmp_path, capsys):
    module = example("fit_hcp")
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for method in ("scipy:L-BFGS-B", "cma", "nevergrad:NGOpt"):
        assert method in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert -1 <= summary["fc_r"] <= 1 and summary["best_method"] in printed
    for name in ("comparison.csv", "histories.csv", "convergence.png", "fit.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_fic_eib_script_quick(tmp_path, capsys):
    module = example("fic_eib")
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "FIC: 5 TRs" in printed and "EIB: 8 TRs" in printed
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["step"] for r in rows] == ["fic+eib", "refined"]
    assert all(-1 <= r["fc_r_train"] <= 1 for r in rows) and rows[1]["nfev"] == 2
    assert (tmp_path / "tuning.csv").stat().st_size > 0


def test_wilson_cowan_delays_script_quick(capsys):
    module = example("wilson_cowan_delays")
    assert module.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "scipy:Nelder-Mead" in printed and "scipy:L-BFGS-B" in printed and "held-out FC r" in printed


def test_rww_tutorial_script_quick(capsys):
    module = example("rww_tutorial")
    assert module.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "grid 2x2" in printed and "global: FC r" in printed and "regional: FC r" in printed
