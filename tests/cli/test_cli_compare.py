"""``probgen compare``: every family trained, scored and exported in one command."""

from __future__ import annotations


import pytest

from probgen.cli import main


def test_probgen_compare_smoke_end_to_end(tmp_path, capsys):
    import pandas as pd

    from probgen.cli import FAMILY_BUILDERS
    from probgen.diagnostics import load_inference_data

    out = tmp_path / "compare"
    assert main(["compare", "--data", "moons", "--budget", "smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    families = sorted(FAMILY_BUILDERS)
    table = pd.read_csv(out / "table.csv", index_col="model")
    assert sorted(table.index) == families  # every family that has landed is in the table
    assert table["mean_nats"].notna().all() and table["diff"].max() == 0.0
    assert (table["diff_stderr"] >= 0).all()
    assert (out / "table.md").read_text().startswith("# moons: test log-likelihood")
    assert (out / "compare.png").stat().st_size > 1000
    for family in families:
        assert (out / f"samples_{family}.png").stat().st_size > 1000
        assert (out / "models" / f"{family}.pt").is_file()
        idata = load_inference_data(out / f"idata_{family}.nc")
        assert {"log_likelihood", "sample_stats", "observed_data"} <= set(idata.groups())
        assert idata.sample_stats["pareto_k"].sizes["datum"] == 16
        assert f"{family}: Pareto k of the importance weights on 16 test points" in printed
    assert main(["compare", "--data", "moons", "--budget", "smoke", "--out", str(out)]) == 2
    assert "table.md' already exists; nothing was overwritten" in capsys.readouterr().err

    other = tmp_path / "other"
    (other / "models").mkdir(parents=True)
    (other / "models" / "gan.pt").write_bytes(b"keep")  # any output of the command, not only table.md
    assert main(["compare", "--data", "moons", "--budget", "smoke", "--families", "gan", "--out", str(other)]) == 2
    assert "gan.pt' already exists" in capsys.readouterr().err
    assert (other / "models" / "gan.pt").read_bytes() == b"keep" and not (other / "table.md").exists()


def test_probgen_compare_reports_a_failing_family(tmp_path, monkeypatch, capsys):
    from probgen.cli import FAMILY_BUILDERS

    def broken(info, args):
        raise RuntimeError("this family cannot be built")

    monkeypatch.setitem(FAMILY_BUILDERS, "broken", broken)
    out = tmp_path / "compare"
    with pytest.raises(SystemExit, match="1 of 2 families failed: broken: training failed: RuntimeError: this family cannot be built"):
        main(["compare", "--data", "moons", "--budget", "smoke", "--families", "vae,broken", "--out", str(out), "--no-progress"])
    assert "error: broken: training failed: RuntimeError" in capsys.readouterr().err
    markdown = (out / "table.md").read_text()
    assert "| broken | failed |" in markdown and "failed: broken: training failed" in markdown
    assert (out / "idata_vae.nc").is_file()  # the other family's results were still written
    assert main(["compare", "--data", "moons", "--families", "vae,nope", "--out", str(tmp_path / "x")]) == 2
