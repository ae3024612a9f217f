import json

import pytest

from probgen.cli import main


def test_fit_evaluate_sample_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["fit", "vae", "--data", "optdigits", "--epochs", "2", "--out", str(out), "--num-samples", "20",
                 "--num-test", "50", "--no-progress", "--latent-dim", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "IWAE bound, k=20" in printed and "ELBO bound" in printed and "bits/dim" in printed
    for name in ("model.pt", "loss.png", "samples.png", "metrics.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["iwae"]["num_data"] == 50 and metrics["test"]["iwae"]["kind"] == "bound"
    assert metrics["test"]["iwae"]["mean_nats"] >= metrics["test"]["elbo"]["mean_nats"] - 1.0

    assert main(["evaluate", str(out), "--method", "iwae", "--num-samples", "10", "--num-test", "30"]) == 0
    assert "IWAE bound, k=10" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "-n", "16", "--out", str(grid)]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"


def test_fit_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_bytes(b"keep")
    with pytest.raises(SystemExit, match="already holds a model.pt"):
        main(["fit", "vae", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert (out / "model.pt").read_bytes() == b"keep"


def test_evaluate_reports_a_missing_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--latent-dim", "0"], "latent_dim must be a positive integer, got 0"),
        (["--latent-dim", "-1"], "latent_dim must be a positive integer, got -1"),
        (["--device", "foo"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'foo'"),
        (["--lr", "1e10"], "loss is"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    code = main(["fit", "vae", "--data", "moons", "--epochs", "2", "--out", str(tmp_path / "run"), "--no-progress",
                 "--num-test", "10", *arguments])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
