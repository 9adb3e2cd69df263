"""The fitbridge command line: help, exit codes, one-line errors, and the commands end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fitbridge._spec import load_spec, spec_hash
from fitbridge.cli import COMMANDS, main
from tests.spec_data import tiny_spec, write_data, write_spec

ROOT = Path(__file__).parents[1]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fitbridge", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    write_data(folder)
    return folder


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fitbridge: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------ help
def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text
    assert "results/<spec name>-<hash8>" in text


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: fitbridge {command}")
    if command in ("run", "explore", "compare", "simulate"):
        for option in ("SPEC", "--out", "--quick", "--set", "--quiet", "SMOKE SETTING"):
            assert option in text


# ------------------------------------------------------------------------------ errors
def test_errors_in_a_fresh_process_are_one_line_with_status_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: rww\n")
    cases = [
        (("run", tmp_path / "missing.yaml"), "expected an existing spec file"),
        (("run", bad), "valid YAML"),
        (("frobnicate",), "invalid choice"),
        (("run", ROOT / "examples/specs/rww_fit.yaml", "--set", "optimize[0].methd=cma"), "did you mean 'method'"),
    ]
    for args, fragment in cases:
        proc = _cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert fragment in _one_line_error(proc.stderr)
        assert proc.stdout == ""


@pytest.mark.parametrize("args, fragment", [
    (["run"], "required: SPEC"),
    (["compare", "examples/specs/rww_fit.yaml"], "--methods"),
    (["compare", "examples/specs/rww_fit.yaml", "--methods", "lbfgsb"], "did you mean 'scipy:L-BFGS-B'"),
    (["compare", "examples/specs/rww_fit.yaml", "--methods", "cma", "--budget", "0"], "integer >= 1"),
    (["run", "examples/specs/rww_fit.yaml", "--set", "integration.dt"], "KEY=VALUE"),
    (["run", "examples/specs/rww_fit.yaml", "--set", "integration.dt=-4"], "integration.dt: expected a number > 0"),
    (["run", "examples/specs/rww_fit.yaml", "--set", "optimize[9].budget=3"], "index into an existing list"),
    (["explore", "examples/specs/wilson_cowan_delays.yaml"], "exploration: expected an exploration section"),
    (["simulate", "examples/specs/rww_fit.yaml", "--params", "nope.json"], "--params"),
    (["methods", "--library", "torch"], "--library"),
    (["run", "examples/specs/rww_fit.yaml", "--set", "validation.train=[0,1,2,3,4,5,6]"], "validation.train"),
    (["run", "examples/specs/rww_fit.yaml", "--set", "model.name=excinh"], "model.parameters.w"),
])
def test_bad_input_exits_2_with_one_line(args, fragment, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    assert main([*args, "--out", str(tmp_path)] if args[0] in ("run", "simulate") and len(args) > 1 else args) == 2
    captured = capsys.readouterr()
    assert fragment in _one_line_error(captured.err), captured.err
    assert captured.out == ""


@pytest.mark.parametrize("model,tuning,fragment", [
    ("rww", {"fic": {}}, "tuning.fic: expected model.name: excinh or eib"),
    ("excinh", {"eib": {}}, "tuning.eib: expected tuning.fic as well"),
    ("excinh", {"fic": {"eta": -1}}, "tuning.fic.eta"),
])
def test_bad_tuning_request_is_a_clear_error(tmp_path, capsys, model, tuning, fragment):
    spec = {"model": {"name": model, "parameters": {"G": {"value": 2.0, "domain": [0.5, 3.0], "free": True}}},
            "network": {"dataset": "hcp"}, "optimize": [{"method": "cma"}], "tuning": tuning}
    path = write_spec(tmp_path, spec, "fic.yaml")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert fragment in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ listings
def test_methods_and_datasets_tables(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split()
    assert header[:3] == ["method", "library", "installed"] and "gradient" in header and "batched" in header
    lbfgs = next(line for line in text.splitlines() if line.startswith("scipy:L-BFGS-B "))
    assert lbfgs.split()[1:4] == ["scipy", "yes", "yes"]
    assert main(["datasets"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["name", "regions", "subjects", "frames", "TR", "(ms)"]
    assert rows[2].split() == ["hcp", "80", "7", "1200", "720"]


# ------------------------------------------------------------------------------ commands end to end
def test_console_run_writes_the_default_folder(data_dir, tmp_path, capsys):
    spec = tiny_spec(exploration=None, optimize=[{"method": "scipy:Nelder-Mead", "budget": 3, "start": "init",
                                                  "free": ["G"]}])
    path = write_spec(data_dir, spec, "one_stage.yaml")
    proc = _cli("run", path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "results" / f"tiny-{spec_hash(load_spec(path))[:8]}"
    assert (folder / "manifest.json").is_file() and (folder / "params.json").is_file()
    assert "fitted: optimize[0]" in proc.stdout and f"results: {folder.relative_to(tmp_path)}/" in proc.stdout
    assert main(["run", str(path), "--quiet", "--out", str(tmp_path / "q")]) == 0  # same run, in-process
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert json.loads((tmp_path / "q" / "params.json").read_text()) == json.loads((folder / "params.json").read_text())


def test_explore_compare_and_simulate_commands(data_dir, tmp_path, capsys):
    path = write_spec(data_dir, tiny_spec(), "tiny.yaml")
    assert main(["explore", str(path), "--out", str(tmp_path / "e"), "-q"]) == 0
    explored = pd.read_csv(tmp_path / "e" / "exploration.csv")
    assert len(explored) == 4 and {"G", "w", "loss", "fc_r"} <= set(explored.columns)
    best = json.loads((tmp_path / "e" / "params.json").read_text())["values"]
    assert best["G"] == explored.loc[explored["loss"].idxmin(), "G"]
    assert main(["compare", str(path), "--methods", "scipy:Nelder-Mead", "scipy:powell", "--budget", "3",
                 "--start", "init", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "scipy:Powell" in out and "fc_r_heldout" in out
    table = pd.read_csv(tmp_path / "c" / "summary.csv")
    assert table["method"].tolist() == ["scipy:Nelder-Mead", "scipy:Powell"] and (table["nfev"] <= 3).all()
    assert (tmp_path / "c" / "figures" / "convergence.png").is_file()
    params = tmp_path / "c" / "params.json"
    assert main(["simulate", str(path), "--params", str(params), "--out", str(tmp_path / "s"), "-q"]) == 0
    assert __import__("numpy").load(tmp_path / "s" / "bold.npy").shape == (20, 6)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    best_row = table.loc[table["loss"].idxmin()]
    assert summary["fc_r_train"] == pytest.approx(best_row["fc_r_train"], abs=1e-12)


def test_simulate_params_with_an_unknown_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"values": {"G": 0.3, "gamma_x": 1.0}}))
    assert main(["simulate", "examples/specs/rww_fit.yaml", "--params", str(params), "--out", str(tmp_path / "o")]) == 2
    assert "--params gamma_x" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()  # nothing is written for bad input
