"""``probgen fit flow``: a density plot for 2-D data, a sample grid for images."""

from __future__ import annotations

import json

from probgen.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_fit_flow_on_moons_writes_a_density_plot(tmp_path, capsys):
    out = tmp_path / "moons"
    code = main(["fit", "flow", "--data", "moons", "--epochs", "1", "--flow", "realnvp", "--flow-layers", "2",
                 "--flow-hidden", "16", "--batch-size", "500", "--num-test", "500", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "(exact" in capsys.readouterr().out
    for name in ("density.png", "samples.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert (out / "model.pt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["test"]) == ["exact"] and metrics["test"]["exact"]["kind"] == "exact"
    assert main(["evaluate", str(out), "--num-test", "100"]) == 0
    assert "(exact" in capsys.readouterr().out


def test_fit_flow_on_optdigits_writes_a_sample_grid_and_bounds(tmp_path, capsys):
    out = tmp_path / "digits"
    code = main(["fit", "flow", "--data", "optdigits", "--epochs", "1", "--flow", "maf", "--flow-layers", "1",
                 "--flow-hidden", "16", "--num-test", "20", "--num-samples", "4", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "IWAE bound, k=4" in printed and "ELBO bound, k=4" in printed
    assert (out / "samples.png").read_bytes()[:8] == PNG and not (out / "density.png").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["iwae"]["kind"] == "bound"
    assert main(["sample", str(out), "-n", "9", "--out", str(tmp_path / "grid.png")]) == 0
