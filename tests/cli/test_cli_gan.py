"""``probgen fit gan`` and ``probgen evaluate`` of a GAN (AIS with observation noise)."""

from __future__ import annotations

import probgen as pg


def test_cli_fit_and_evaluate_a_gan(tmp_path, capsys):
    from probgen.cli import main

    out = tmp_path / "ring"
    assert main(["fit", "gan", "--data", "ring8", "--epochs", "1", "--batch-size", "1024", "--loss", "hinge",
                 "--pack", "2", "--r1-weight", "0.5", "--gp-weight", "0.1", "--out", str(out), "--no-progress"]) == 0
    assert (out / "samples.png").is_file() and (out / "checkpoints" / "last.pt").is_file()
    assert "mode coverage:" in capsys.readouterr().out
    loaded = pg.load_model(out / "model.pt")
    assert loaded.pack == 2 and loaded.r1_weight == 0.5 and loaded.gp_weight == 0.1
    # the implicit model has no likelihood until it is given observation noise
    assert main(["evaluate", str(out), "--method", "ais", "--num-test", "5", "--num-samples", "2", "--ais-steps", "5"]) == 2
    assert "no obs_noise" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--method", "ais", "--obs-noise", "0.1", "--num-test", "5", "--num-samples", "2",
                 "--ais-steps", "5"]) == 0
    assert "AIS estimate, k=2" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--method", "ais", "--obs-noise", "auto", "--num-test", "5", "--num-samples", "2",
                 "--ais-steps", "3"]) == 0
    assert "chosen by AIS on 100 validation points" in capsys.readouterr().out
    digits = tmp_path / "digits"
    assert main(["fit", "gan", "--data", "optdigits", "--epochs", "1", "--batch-size", "512", "--out", str(digits),
                 "--no-progress"]) == 0
    assert (digits / "samples.png").is_file()
