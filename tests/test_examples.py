"""The README's main job runs end to end in its shortened form and writes what it promises."""

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "fit_hcp.py"


def test_fit_hcp_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fit_hcp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for method in ("scipy:L-BFGS-B", "cma", "nevergrad:NGOpt"):
        assert method in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert -1 <= summary["fc_r"] <= 1 and summary["best_method"] in printed
    for name in ("comparison.csv", "histories.csv", "convergence.png", "fit.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_fic_eib_script_quick(tmp_path, capsys):
    path = Path(__file__).parents[1] / "examples" / "fic_eib.py"
    spec = importlib.util.spec_from_file_location("fic_eib", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "FIC: 5 TRs" in printed and "EIB: 8 TRs" in printed
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["step"] for r in rows] == ["fic+eib", "refined"]
    assert all(-1 <= r["fc_r_train"] <= 1 for r in rows) and rows[1]["nfev"] == 2
    assert (tmp_path / "tuning.csv").stat().st_size > 0


def test_wilson_cowan_delays_script_quick(capsys):
    path = Path(__file__).parents[1] / "examples" / "wilson_cowan_delays.py"
    spec = importlib.util.spec_from_file_location("wilson_cowan_delays", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "scipy:Nelder-Mead" in printed and "scipy:L-BFGS-B" in printed and "held-out FC r" in printed


def test_rww_tutorial_script_quick(capsys):
    path = Path(__file__).parents[1] / "examples" / "rww_tutorial.py"
    spec = importlib.util.spec_from_file_location("rww_tutorial", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    printed = capsys.readouterr().out
    assert "grid 2x2" in printed and "global: FC r" in printed and "regional: FC r" in printed
