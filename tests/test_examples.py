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
