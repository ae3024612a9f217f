"""The diffusion family through the ``probgen`` command: fit, evaluate (the bound and its
three terms), sample with a respaced DDIM sampler."""

from __future__ import annotations

from probgen.cli import main


def test_fit_evaluate_and_sample_a_diffusion(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "diffusion", "--data", "moons", "--epochs", "1", "--num-steps", "50", "--out", str(out),
                 "--num-test", "100", "--num-samples", "2", "--no-progress"]) == 0
    assert (out / "model.pt").is_file() and (out / "samples.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--num-test", "100", "--num-samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ELBO bound" in printed and "nats (density)" in printed
    for term in ("prior", "diffusion", "reconstruction"):
        assert term in printed
    assert main(["sample", str(out), "-n", "16", "--steps", "10", "--sampler", "ddim", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["sample", str(out), "--steps", "51", "--out", str(tmp_path / "t.png")]) == 2
    assert "steps=51 exceeds the model's num_steps=50" in capsys.readouterr().err
