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
    assert main(["evaluate", str(out), "--method", "iwae", "--num-samples", "10", "--num-test", "30", "--refine", "5"]) == 0
    assert "IWAE bound, k=10, refine=5" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--method", "elbo", "--refine", "5"]) == 2
    assert "--refine applies to --method iwae, not elbo" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--refine", "-1"]) == 2
    assert "--refine must be an integer >= 0, got -1" in capsys.readouterr().err
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "-n", "16", "--out", str(grid)]) == 0
    assert grid.read_bytes()[:4] == b"\x89PNG"
    for n in ("0", "-5", "1000000"):
        assert main(["sample", str(out), "-n", n, "--out", str(tmp_path / "other.png")]) == 2
        assert f"-n must be an integer from 1 to 10000, got {n}" in capsys.readouterr().err
    assert main(["sample", str(out), "-n", "16", "--out", str(grid)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--obs-noise", "abc"]) == 2
    assert "--obs-noise must be 'auto' or a positive number, got 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("existing", ["model.pt", "loss.png", "samples.png", "metrics.json", "checkpoints/last.pt"])
def test_fit_refuses_to_overwrite_any_output_before_work(tmp_path, capsys, monkeypatch, existing):
    import probgen as pg

    monkeypatch.setattr(pg, "fit", lambda *args, **kwargs: pytest.fail("fit ran before the outputs were checked"))
    out = tmp_path / "run"
    (out / existing).parent.mkdir(parents=True)
    (out / existing).write_bytes(b"keep")
    assert main(["fit", "vae", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing was overwritten" in err and "Traceback" not in err
    assert (out / existing).read_bytes() == b"keep"


def test_an_interrupted_run_continues_with_resume(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["fit", "flow", "--data", "moons", "--out", str(out), "--no-progress", "--num-test", "10",
            "--flow-layers", "1", "--flow-hidden", "8"]
    assert main([*base, "--epochs", "3"]) == 0
    straight = json.loads((out / "metrics.json").read_text())["history"]["train_loss"]

    interrupted = tmp_path / "interrupted"
    base[base.index(str(out))] = str(interrupted)
    assert main([*base, "--epochs", "2"]) == 0
    assert main([*base, "--epochs", "3"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*base, "--epochs", "3", "--resume"]) == 0
    resumed = json.loads((interrupted / "metrics.json").read_text())["history"]["train_loss"]
    assert resumed == straight


def test_a_resume_with_another_objective_is_refused_and_the_run_is_kept(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["fit", "vae", "--out", str(out), "--no-progress", "--num-test", "10", "--num-samples", "5",
            "--objective", "iwae:2"]
    assert main([*base, "--epochs", "1"]) == 0
    kept = {name: (out / name).read_bytes() for name in ("model.pt", "metrics.json", "checkpoints/last.pt")}
    capsys.readouterr()
    assert main([*base[:-1], "elbo", "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "objective='SVIObjective(IWAE(num_particles=2))'" in err and "resume with the same objective" in err
    assert "Traceback" not in err
    assert {name: (out / name).read_bytes() for name in kept} == kept
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["fit", "vae", "--num-test", "0"], "--num-test must be a positive integer, got 0"),
        (["fit", "vae", "--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["fit", "vae", "--seed", "-3"], "--seed must be an integer from 0 to 4294967295, got -3"),
        (["fit", "vae", "--lr", "-1"], "--lr must be a positive finite number, got -1.0"),
        (["fit", "vae", "--batch-size", "-1"], "--batch-size must be a positive integer, got -1"),
        (["fit", "flow", "--flow-layers", "0"], "--flow-layers must be a positive integer, got 0"),
        (["fit", "gan", "--r1-weight", "-1"], "--r1-weight must be a non-negative finite number, got -1.0"),
        (["fit", "vae", "--device", "mps"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'mps'"),
        (["compare", "--num-samples", "0"], "--num-samples must be a positive integer, got 0"),
        (["compare", "--families", "vae,nope"], "unknown families ['nope']"),
    ],
)
def test_every_option_is_checked_before_any_work(tmp_path, capsys, monkeypatch, arguments, message):
    import probgen as pg

    monkeypatch.setattr(pg.datasets, "load", lambda *a, **k: pytest.fail("data were loaded before the check"))
    assert main([*arguments, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("keep")
    assert main(["fit", "vae", "--out", str(tmp_path / "taken"), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "keep"


def test_evaluate_reports_a_missing_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--latent-dim", "0"], "--latent-dim must be a positive integer, got 0"),
        (["--latent-dim", "-1"], "--latent-dim must be a positive integer, got -1"),
        (["--device", "foo"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'foo'"),
        (["--lr", "1e10"], "loss is"),
    ],
)
def test_user_errors_end_in_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    code = main(["fit", "vae", "--data", "moons", "--epochs", "2", "--out", str(tmp_path / "run"), "--no-progress",
                 "--num-test", "10", *arguments])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
