"""``probgen fit hvae``, ``evaluate`` and ``sample``; the layer sizes on the command line."""

from __future__ import annotations

import json
import re

import pytest

import probgen as pg
from probgen.cli import main


def test_fit_evaluate_sample_a_hierarchical_vae(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", "hvae", "--data", "optdigits", "--epochs", "2", "--out", str(out), "--num-samples", "10",
                 "--num-test", "30", "--no-progress", "--latent-dims", "6,3", "--inference", "bottom-up",
                 "--prior", "mixture", "--top-down-path"])
    assert code == 0
    printed = capsys.readouterr().out
    # the ELBO is printed with one KL term per layer beside the reconstruction
    assert "IWAE bound, k=10" in printed and "ELBO bound" in printed
    assert "z2:" in printed and "z1:" in printed and "reconstruction:" in printed
    model = pg.load_model(out / "model.pt")
    assert model.latent_dims == (6, 3) and model.inference.value == "bottom-up" and model.config["prior"] == "mixture"
    assert model.top_down_path and model.config["top_down_path"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["family"] == "hvae" and metrics["test"]["iwae"]["num_data"] == 30

    assert main(["evaluate", str(out), "--method", "ais", "--num-samples", "2", "--num-test", "5",
                 "--ais-steps", "5"]) == 0
    assert "AIS estimate, k=2" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "-n", "16", "--out", str(grid)]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("value", "message"), [("4,x", "comma-separated integers"), ("4,0", r"--latent-dims must be a non-empty sequence")])
def test_bad_layer_sizes_end_in_one_line(tmp_path, capsys, value, message):
    arguments = ["fit", "hvae", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress", "--latent-dims", value]
    if "x" in value:  # argparse refuses it: usage and exit status 2
        with pytest.raises(SystemExit) as stopped:
            main(arguments)
        assert stopped.value.code == 2
    else:
        assert main(arguments) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
