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


def test_fit_takes_the_networks_the_vampprior_the_regularizers_the_objective_and_the_average(tmp_path, capsys,
                                                                                             monkeypatch):
    out = tmp_path / "run"
    calls, fit = [], pg.fit
    monkeypatch.setattr(pg, "fit", lambda *args, **options: calls.append(options) or fit(*args, **options))
    code = main(["fit", "hvae", "--data", "optdigits", "--epochs", "1", "--out", str(out), "--num-samples", "4",
                 "--num-test", "10", "--no-progress", "--latent-dims", "6,3", "--inference", "top-down",
                 "--top-down-path", "--prior", "vamp", "--num-pseudo-inputs", "7", "--pseudo-inputs", "clamped",
                 "--hidden", "24", "--activation", "gated", "--encoder-noise", "0.1", "--generative-dropout", "0.1",
                 "--objective", "iwae:3", "--ema", "0.99"])
    assert code == 0, capsys.readouterr().err
    model = pg.load_model(out / "model.pt")
    config = model.config
    assert (config["num_pseudo_inputs"], config["pseudo_inputs"], config["hidden"], config["activation"]) == \
        (7, "clamped", [24], "gated")
    assert (config["encoder_noise"], config["generative_dropout"]) == (0.1, 0.1)
    assert model.prior.pseudo_inputs.shape[0] == 7
    checkpoint = pg.infer.load_checkpoint(out / "checkpoints" / "last.pt", required=("ema",))
    assert checkpoint["ema"]["decay"] == 0.99
    assert calls[0]["objective"] == "iwae:3" and calls[0]["ema"] == 0.99


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--generative-dropout", "1", r"--generative-dropout must be a number from 0 up to \(not including\) 1, got 1.0"),
    ("--encoder-noise", "-0.5", "--encoder-noise"),
    ("--ema", "1.5", r"--ema must be a number from 0 up to \(not including\) 1, got 1.5"),
    ("--objective", "iwae:0", "the number of particles after ':' must be a positive integer"),
    ("--objective", "bogus", "unknown objective 'bogus'"),
    ("--hidden", "24,0", "--hidden must be a non-empty sequence"),
    ("--num-pseudo-inputs", "0", "--num-pseudo-inputs"),
])
def test_bad_model_and_training_options_are_refused_before_any_work(tmp_path, capsys, option, value, message):
    out = tmp_path / "run"
    assert main(["fit", "hvae", "--epochs", "1", "--out", str(out), "--no-progress", "--data", "no-such-data",
                 option, value]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert not out.exists()  # refused before the data were looked for or anything was written
