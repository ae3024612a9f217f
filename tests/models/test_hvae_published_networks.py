"""The binarized-MNIST benchmark's Tomczak & Welling networks (``benchmarks/hvae_binarized_mnist.py
--architecture tomczak-welling``), plugged into :class:`probgen.HierarchicalVAE` as custom
modules: they train through ``pg.fit`` with the normalized Adam, their scales and pseudo-inputs
stay in the published ranges, and the script's ``trained_model`` (what its
``evaluate`` stage scores) rebuilds it from a checkpoint, though the model has no config."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pyro
import pytest
import torch

import probgen as pg

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hvae_binarized_mnist.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("hvae_binarized_mnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(120, 28, 28, generator=generator) < 0.2).float()


INFO = pg.DataInfo((28, 28), "binary")


@pytest.mark.parametrize("prior", ["vamp", "normal"])
def test_the_published_networks_train_and_their_checkpoint_rebuilds_the_model(script, images, prior, tmp_path):
    torch.manual_seed(0)
    model = script.build(prior, INFO, script.EXACT)
    assert model.config is None  # custom modules: the script rebuilds it, load_model cannot
    before = pg.log_likelihood(model, images[:20], method="elbo", num_samples=4).mean
    run = pg.fit(model, images[:100], images[100:], epochs=2, batch_size=20, lr=5e-4, optimizer=script.NormalizedAdam,
                 objective=pg.infer.KLWarmup(2), checkpoint_dir=tmp_path, progress=False, seed=0)
    assert run.history["valid_loss"][-1] < run.history["valid_loss"][0]
    assert pg.log_likelihood(model, images[:20], method="elbo", num_samples=4).mean > before

    architecture = script.architecture_of(script.saved_run(tmp_path)[2])
    assert architecture == script.EXACT
    rebuilt, saved_prior = script.trained_model(tmp_path / "last.pt", architecture, INFO)  # what evaluate scores
    assert saved_prior == prior
    torch.manual_seed(1)
    expected = pg.log_likelihood(model, images[:20], method="iwae", num_samples=8).pointwise
    torch.manual_seed(1)
    assert torch.equal(pg.log_likelihood(rebuilt, images[:20], method="iwae", num_samples=8).pointwise, expected)


def test_scales_are_clipped_and_pseudo_inputs_stay_in_the_unit_interval(script):
    head = script.ClippedGaussian(3, 2)
    with torch.no_grad():
        head.log_var.weight.fill_(0.0)
        head.log_var.bias.copy_(torch.tensor([-50.0, 50.0]))
    _, scale = head(torch.zeros(4, 3))
    assert torch.allclose(scale, torch.tensor([torch.e ** -3, torch.e]).expand(4, 2))

    torch.manual_seed(0)
    model = script.build("vamp", INFO, script.EXACT)
    raw = model.prior.pseudo_inputs
    assert raw.shape == (500, 28, 28) and abs(raw.mean().item() + 0.05) < 1e-3
    with torch.no_grad():
        raw.mul_(1000.0)  # far outside (0, 1) before the sigmoid
    mixture = model.prior()
    assert torch.isfinite(mixture.log_prob(torch.zeros(3, 40))).all()


def test_normalized_adam_steps_as_adam_on_unit_norm_gradients(script):
    weight = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    reference = torch.nn.Parameter(weight.detach().clone())
    optimizer, plain = script.NormalizedAdam([weight], lr=0.1), torch.optim.Adam([reference], lr=0.1)
    for scale in (1.0, 100.0, 0.01):  # Adam alone would weigh these gradients by their size
        weight.grad = torch.tensor([0.6, 0.8]) * scale
        reference.grad = torch.tensor([0.6, 0.8])
        optimizer.step()
        plain.step()
    assert torch.allclose(weight, reference)


def test_pseudo_inputs_can_start_at_distinct_training_images(script):
    torch.manual_seed(0)
    model = script.build("vamp", INFO, "published")
    train = (torch.rand(600, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    script.start_at_training_images(model, train, seed=3)
    u = model.prior.pseudo_inputs
    assert u.shape == (500, 28, 28)
    # each pseudo-input is one of the (distinct) training images, and no image is used twice
    matches = (u.flatten(1)[:, None, :] == train.flatten(1)[None]).all(-1)
    assert bool((matches.sum(1) == 1).all())
    assert int(matches.any(0).sum()) == 500


def test_a_run_with_a_weight_average_or_another_seed_is_recorded_in_a_row_of_its_own(script, images, tmp_path):
    small = pg.HierarchicalVAE(INFO, (4, 2), hidden=(16,), prior="normal")
    pg.fit(small, images[:100], images[100:], epochs=1, batch_size=50, ema=0.999, checkpoint_dir=tmp_path / "ema",
           progress=False, seed=0)
    pg.fit(small, images[:100], images[100:], epochs=1, batch_size=50, checkpoint_dir=tmp_path / "plain",
           progress=False, seed=3)
    assert script.saved_run(tmp_path / "ema")[3:] == (0.999, 0)
    assert script.saved_run(tmp_path / "plain")[3:] == (None, 3)
    assert script.saved_run(tmp_path / "none") == (0, {}, None, None, 0)

    assert script.result_key("vamp", "published", 0.999) == "vamp+ema0.999"
    assert script.result_key("normal", "markov", 0.999) == "normal/markov+ema0.999"
    assert script.result_key("vamp", "published", None) == script.result_key("vamp", "published") == "vamp"
    assert script.row_label({"prior": "vamp", "architecture": "published", "ema": 0.999}) == "vamp/published+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published"}) == "vamp/published"  # rows before the key
    # clamped pseudo-inputs (train --pseudo-init clamped) are a recipe of their own, read from the model's config
    assert script.result_key("vamp", "published", 0.999, "clamped") == "vamp-clamped+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped",
                             "ema": 0.999}) == "vamp-clamped/published+ema0.999"
    # a replicate of a recipe from another seed (train --seed 1) is a row of its own; seed 0 names none
    assert script.result_key("vamp", "published", 0.999, "clamped", 1) == "vamp-clamped+ema0.999+seed1"
    assert script.result_key("vamp", "published", 0.999, "clamped", 0) == "vamp-clamped+ema0.999"
    assert script.result_key("normal", "published", None, "uniform", 2) == "normal+seed2"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped",
                             "ema": 0.999, "seed": 1}) == "vamp-clamped/published+ema0.999+seed1"
    # the same model scored with refined proposals (evaluate --refine 300) is a row of its own
    assert script.result_key("vamp", "published", 0.999, "clamped", 1, 300) == "vamp-clamped+ema0.999+seed1+refine300"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped", "ema": 0.999,
                             "seed": 1, "refine": 300}) == "vamp-clamped/published+ema0.999+seed1+refine300"
    clamped = script.build("vamp", INFO, "published", "clamped")
    assert clamped.config["pseudo_inputs"] == "clamped" and clamped.prior.bounds == (0.0, 1.0)
    # a run whose encoder read noisy training images (train --encoder-noise 0.25) is a recipe of its own
    assert script.result_key("vamp", "published", 0.999, "clamped", encoder_noise=0.25) == "vamp-clamped+noise0.25+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped", "ema": 0.999,
                             "encoder_noise": 0.25}) == "vamp-clamped/published+noise0.25+ema0.999"
    assert script.build("vamp", INFO, "published", "clamped", 0.25).config["encoder_noise"] == 0.25
    # so is a run whose generative networks dropped hidden units (train --generative-dropout 0.1)
    assert script.result_key("vamp", "published", 0.999, "clamped", generative_dropout=0.1) == \
        "vamp-clamped+dropout0.1+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped", "ema": 0.999,
                             "generative_dropout": 0.1}) == "vamp-clamped/published+dropout0.1+ema0.999"
    assert script.build("vamp", INFO, "published", "clamped", 0.0, 0.1).config["generative_dropout"] == 0.1


def test_paired_difference_of_two_runs_on_the_same_images(script, tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    hardness = 80 + 10 * torch.rand(400, generator=generator, dtype=torch.float64)  # shared by both runs
    first = hardness + 0.01 * torch.randn(400, generator=generator, dtype=torch.float64)
    second = hardness + 0.3 + 0.01 * torch.randn(400, generator=generator, dtype=torch.float64)
    mean, stderr = script.paired_difference(first, second)
    assert mean == pytest.approx((first - second).mean().item())
    assert mean == pytest.approx(-0.3, abs=0.01)
    assert stderr < 0.002 < first.std().item() / 20  # the images' hardness cancels
    with pytest.raises(ValueError, match="same images: got 400 and 399"):
        script.paired_difference(first, second[:-1])

    # evaluate's saved scores round-trip into the 'paired' stage, which names a missing one
    for name, values in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        path = script.save_scores(tmp_path / name, values.float(), 5000)
        assert path == script.scores_path(tmp_path / name, 5000, 400)
        assert torch.equal(script.read_scores(path), values.float().double())
    args = SimpleNamespace(checkpoint_dir=str(tmp_path / "a"), against=str(tmp_path / "b"), num_samples=5000, num_test=400, refine=0)
    text = script.paired(args, 10000)
    assert "on the same 400 test images" in text and f"difference (first - second): {mean:+.3f} ± {stderr:.3f}" in text
    args.num_samples = 1000
    with pytest.raises(SystemExit, match=r"no per-image scores at .*test_nll_k1000_n400\.npy.*--num-samples 1000 --num-test 400"):
        script.paired(args, 10000)

    # a recorded row keeps its scores in the repository, so a run pairs with it after its checkpoints are gone
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results" / "hvae_binarized_mnist")
    monkeypatch.setattr(script, "RECORDED_SCORES", tmp_path / "results" / "scores")
    key = "vamp/markov+ema0.999+seed1"
    path = script.record_scores(key, second.float())
    assert path == tmp_path / "results" / "scores" / "vamp_markov+ema0.999+seed1.npy"
    script.RESULTS.with_suffix(".json").write_text(json.dumps({key: {"num_samples": 5000, "num_test": 400}}))
    args = SimpleNamespace(checkpoint_dir=str(tmp_path / "a"), against=key, num_samples=5000, num_test=400, refine=0)
    assert f"difference (first - second): {mean:+.3f} ± {stderr:.3f}" in script.paired(args, 10000)
    assert script.run_scores(key, 5000, 400, 10000).dtype == torch.float64
    # a row of the whole test set (here 400 images) pairs with the subset 'evaluate --num-test 100' scores
    subset = script.run_scores(key, 5000, 100, 400)
    assert torch.equal(subset, pg.datasets.random_subset(second.float().double(), 100))
    assert torch.equal(subset, second.float().double()[pg.datasets.random_subset(torch.arange(400), 100)])
    with pytest.raises(SystemExit, match="row vamp/markov.* was scored with k = 5000 on 400 test images, not k = 1000"):
        script.run_scores(key, 1000, 400, 10000)
    with pytest.raises(SystemExit, match=r"vamp\+ema0.999 is neither a checkpoint folder nor a recorded row "
                                         r"\(rows: vamp/markov\+ema0.999\+seed1\)"):
        script.run_scores("vamp+ema0.999", 5000, 400, 10000)
    path.unlink()
    with pytest.raises(SystemExit, match="has no per-image scores at .*recorded before they were kept"):
        script.run_scores(key, 5000, 400, 10000)


def test_a_run_trained_on_the_iwae_bound_keeps_it_beside_its_checkpoints_and_in_its_row(script, images, tmp_path):
    # the objective: annealed over the warm-up, the IWAE bound itself once beta reaches 1 and in validation
    assert script.training_objective(0, 0) == "elbo"
    assert isinstance(script.training_objective(0, 100).elbo, pg.infer.TraceELBO)
    assert type(script.training_objective(5, 0)) is pg.infer.IWAE
    assert type(script.training_objective(5, 0, dreg=True)) is pg.infer.DReGIWAE
    assert type(script.training_objective(5, 100, dreg=True).elbo) is pg.infer.DReGIWAE
    small = pg.HierarchicalVAE(INFO, (4, 2), hidden=(16,), prior="normal")
    objective = script.training_objective(3, 2)
    assert objective.elbo.num_particles == 3 and objective.epochs == 2

    def loss(fn):
        pg.infer.seed_everything(0)
        return fn(small, images[:20]).item()

    plain = pg.infer.SVIObjective(pg.infer.IWAE(3))
    objective.begin_epoch(1)
    assert loss(objective.eval_loss) == pytest.approx(loss(plain.eval_loss), rel=1e-6)
    # beta = 1/2 halves log p(z) - log q(z | x), negative on the whole, so the annealed loss is lower
    assert loss(objective.train_loss) < loss(plain.eval_loss) - 0.05
    objective.begin_epoch(2)
    assert loss(objective.train_loss) == pytest.approx(loss(plain.eval_loss), rel=1e-6)

    # the train stage keeps the bound beside the checkpoints, names the row by it and refuses to change it
    folder = tmp_path / "iwae"
    args = SimpleNamespace(prior="normal", architecture="published", pseudo_init="uniform", encoder_noise=0.0,
                           generative_dropout=0.0, iwae=2, dreg=False, warmup=1, ema=0.0, checkpoint_dir=str(folder),
                           epochs=1,
                           max_epochs=10, patience=5, seed=0, device="cpu", no_progress=True, keep_epochs=False)
    data = SimpleNamespace(train=images[:100], valid=images[100:], info=INFO)
    script.train(args, data)
    assert json.loads((folder / script.RECIPE).read_text()) == {"iwae": 2}
    assert script.training_bound(folder) == (2, False) and script.training_bound(tmp_path / "elbo") == (0, False)
    assert script.saved_run(folder).epochs == 1
    args.iwae = 0
    with pytest.raises(SystemExit, match=r"holds a run trained with --iwae 2; pass the same to continue it"):
        script.train(args, data)
    args.iwae, args.dreg = 2, True
    with pytest.raises(SystemExit, match=r"holds a run trained with --iwae 2; pass the same to continue it"):
        script.train(args, data)
    args.iwae = 0
    with pytest.raises(SystemExit, match=r"--dreg is a gradient of the IWAE bound: pass --iwae K"):
        script.train(args, data)
    args.dreg = False
    args.iwae = -1
    with pytest.raises(SystemExit, match=r"--iwae takes the number of particles .* got -1"):
        script.train(args, data)
    assert script.saved_run(folder).epochs == 1  # nothing was trained or lost
    (folder / script.RECIPE).write_text("{not json")
    with pytest.raises(SystemExit, match=r"recipe.json should hold \{\"iwae\": k\}"):
        script.training_bound(folder)
    (folder / script.RECIPE).write_text('{"iwae": 2.5}')
    with pytest.raises(SystemExit, match=r"k a whole number >= 0, got 2.5"):
        script.training_bound(folder)
    (folder / script.RECIPE).write_text('{"iwae": 0, "dreg": true}')
    with pytest.raises(SystemExit, match=r"\"dreg\" should be true or false \(true only with \"iwae\" > 0\), got True"):
        script.training_bound(folder)

    # with the doubly reparameterized gradient: its own recipe, folder and row
    dreg_folder = tmp_path / "dreg"
    args.checkpoint_dir, args.iwae, args.dreg = str(dreg_folder), 2, True
    script.train(args, data)
    assert json.loads((dreg_folder / script.RECIPE).read_text()) == {"iwae": 2, "dreg": True}
    assert script.training_bound(dreg_folder) == (2, True)
    args.dreg = False
    with pytest.raises(SystemExit, match=r"holds a run trained with --iwae 2 --dreg; pass the same"):
        script.train(args, data)
    assert script.result_key("vamp", "published", 0.999, "clamped", iwae=50, dreg=True) == "vamp-clamped+dreg50+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped", "ema": 0.999,
                             "iwae": 50, "dreg": True}) == "vamp-clamped/published+dreg50+ema0.999"

    assert script.result_key("vamp", "published", 0.999, "clamped", iwae=10) == "vamp-clamped+iwae10+ema0.999"
    assert script.row_label({"prior": "vamp", "architecture": "published", "pseudo_inputs": "clamped", "ema": 0.999,
                             "iwae": 10}) == "vamp-clamped/published+iwae10+ema0.999"
    assert script.result_key("vamp", "published", 0.999, "clamped", iwae=0) == "vamp-clamped+ema0.999"


def test_history_and_validate_set_two_runs_side_by_side_epoch_by_epoch(script, images, tmp_path):
    data = SimpleNamespace(train=images[:100], valid=images[100:], info=INFO)

    def trained(name, iwae, epochs):
        args = SimpleNamespace(prior="normal", architecture="published", pseudo_init="uniform", encoder_noise=0.0,
                               generative_dropout=0.0, iwae=iwae, dreg=False, warmup=1, ema=0.0,
                               checkpoint_dir=str(tmp_path / name), epochs=epochs, max_epochs=10, patience=5, seed=0,
                               device="cpu", no_progress=True, keep_epochs=True)
        script.train(args, data)
        return tmp_path / name, script.saved_run(tmp_path / name).history

    elbo, elbo_history = trained("elbo", 0, 3)
    iwae, iwae_history = trained("iwae", 2, 2)
    alone = script.history_table(elbo).splitlines()
    assert alone[0] == (f"{elbo}: 3 epochs, validation -ELBO in nats, best {min(elbo_history['valid_loss']):.2f} "
                        f"at epoch {script.best_epoch(elbo_history)}")
    rows = [line.split() for line in alone[2:]]
    assert [int(row[0]) for row in rows] == [1, 2, 3] and all(len(row) == 4 for row in rows)
    assert [row[1] for row in rows] == [f"{value:.2f}" for value in elbo_history["valid_loss"]]
    assert [row[2] for row in rows] == [f"{value:.2f}" for value in elbo_history["train_loss"]]

    # the same seed and data order: the second run's bound at each epoch it reached, and the difference
    text = script.history_table(elbo, iwae)
    assert "warning: the two runs are validated on different bounds (-ELBO and -IWAE (k = 2))" in text
    rows = [line.split() for line in text.splitlines()[4:]]
    for epoch, row in enumerate(rows[:2]):
        ours, theirs = elbo_history["valid_loss"][epoch], iwae_history["valid_loss"][epoch]
        assert row[4] == f"{theirs:.2f}" and row[5] == f"{ours - theirs:+.2f}"
    assert len(rows[2]) == 4  # epoch 3: the second run has none
    assert "warning" not in script.history_table(iwae, iwae)
    assert all(row.split()[-1] == "+0.00" for row in script.history_table(iwae, iwae).splitlines()[3:])

    # --keep-epochs kept each epoch's checkpoint: the file pg.fit wrote as last.pt that epoch
    kept = sorted(path.name for path in (elbo / "epochs").iterdir())
    assert kept == ["epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt"]
    for epoch in (1, 2, 3):
        state = pg.infer.load_checkpoint(script.kept_checkpoint_path(elbo, epoch))
        assert state["epoch"] == epoch and state["history"]["valid_loss"] == elbo_history["valid_loss"][:epoch]
    assert (elbo / "epochs" / "epoch_0003.pt").read_bytes() == (elbo / "last.pt").read_bytes()

    # validate: both runs' models of one epoch on the same validation images, and the paired difference
    args = SimpleNamespace(checkpoint_dir=str(elbo), against=str(iwae), epoch=2, num_valid=8, num_samples=4,
                           device="cpu")
    text = script.validate(args, data)
    scores = []
    for folder in (elbo, iwae):
        model = pg.load_model(script.kept_checkpoint_path(folder, 2))
        images = pg.datasets.random_subset(data.valid, 8)
        scores.append(-pg.log_likelihood(model, images, method="iwae", num_samples=4, seed=0).pointwise.double())
    mean, stderr = script.paired_difference(*scores)
    assert "k = 4 on the same 8 validation images, at epoch 2" in text
    assert f"difference (first - second): {mean:+.3f} ± {stderr:.3f}" in text
    args.epoch = 3  # the second run stopped at epoch 2
    with pytest.raises(SystemExit, match=r"iwae kept no checkpoint of epoch 3 .*'train --keep-epochs'"):
        script.validate(args, data)
    args.epoch, args.against = None, None  # one run at its best: no difference to print
    assert "the best epoch" in script.validate(args, data) and "difference" not in script.validate(args, data)
    args.against = str(tmp_path / "nothing")
    with pytest.raises(SystemExit, match=r"nothing holds no checkpoint \(no last.pt\)"):
        script.validate(args, data)

    with pytest.raises(SystemExit, match=r"nothing holds no checkpoint \(no last.pt\): pass a folder that 'train' wrote"):
        script.history_table(tmp_path / "nothing")
    with pytest.raises(SystemExit, match=r"nothing holds no checkpoint"):
        script.history_table(elbo, tmp_path / "nothing")


GAP_SCRIPT = SCRIPT.parent / "hvae_encoder_gap.py"


@pytest.fixture(scope="module")
def gap(script):
    spec = importlib.util.spec_from_file_location("hvae_encoder_gap", GAP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guide_retrains_with_the_model_and_its_vampprior_fixed(script, gap, images, tmp_path):
    data = SimpleNamespace(train=images[:100], valid=images[100:], info=INFO)
    args = SimpleNamespace(prior="vamp", architecture="published", pseudo_init="clamped", encoder_noise=0.0,
                           generative_dropout=0.0, iwae=0, dreg=False, warmup=1, ema=0.0,
                           checkpoint_dir=str(tmp_path / "run"), epochs=2, max_epochs=10, patience=5, seed=0,
                           device="cpu", no_progress=True, keep_epochs=False)
    script.train(args, data)
    model = pg.load_model(tmp_path / "run" / "best.pt")

    # the VampPrior reads the encoder; fixed, it is the same mixture, now of buffers the guide cannot move
    fixed = gap.with_model_fixed(model, data.train)
    assert isinstance(model.prior, pg.distributions.VampPrior) and isinstance(fixed.prior, gap.FixedMixture)
    z = torch.randn(16, 40, generator=torch.Generator().manual_seed(2))
    assert torch.equal(fixed.prior().log_prob(z), model.prior().log_prob(z))
    frozen = {name for name, parameter in fixed.named_parameters() if not parameter.requires_grad}
    trained = {name for name, parameter in fixed.named_parameters() if parameter.requires_grad}
    assert any(name.startswith("decoder.") for name in frozen) and any(name.startswith("conditionals.") for name in frozen)
    assert trained and all(name.startswith(("encoder.", "posteriors.")) for name in trained)
    assert all(parameter.requires_grad for parameter in model.parameters())  # the model itself is untouched

    # retraining moves the guide and nothing of the model: the same weights, the same joint density
    retrained, run = gap.retrain_guide(model, data.train, data.valid, k=2, epochs=2, lr=1e-3, ema=None)
    assert len(run.history["valid_loss"]) == 2
    weights, before = dict(retrained.named_parameters()), dict(model.named_parameters())
    assert all(torch.equal(weights[name], before[name]) for name in frozen)
    assert any(not torch.equal(weights[name], before[name]) for name in trained)
    x = data.valid[:8]
    guide_trace = pyro.poutine.trace(model.guide).get_trace(x)
    densities = [pyro.poutine.trace(pyro.poutine.replay(m.model, trace=guide_trace)).get_trace(x).log_prob_sum()
                 for m in (model, retrained)]
    assert torch.allclose(densities[0], densities[1], rtol=1e-6)

    # the report: each row's figure and paired difference, on the same validation images
    report_args = SimpleNamespace(checkpoint_dir=str(tmp_path / "run"), epoch=None, num_valid=8, num_samples=4, k=2,
                                  epochs=1, lr=1e-3, ema=0.0, refine=2, device="cpu", no_progress=True)
    text = gap.report(report_args, data)
    images8 = pg.datasets.random_subset(data.valid, 8)
    amortized = script.iwae_scores(model, images8, 4)
    again, _ = gap.retrain_guide(model, data.train, data.valid, k=2, epochs=1, lr=1e-3, ema=None)
    for label, values in (("trained again", script.iwae_scores(again, images8, 4)), ("refined (2 steps)",
                                                                            script.iwae_scores(model, images8, 4, refine=2))):
        line = next(line for line in text.splitlines() if label in line)
        mean, stderr = script.mean_and_stderr(values)
        difference, paired = script.paired_difference(values, amortized)
        assert line.split()[-6:] == [f"{mean:.3f}", "±", f"{stderr:.3f}", f"{difference:+.3f}", "±", f"{paired:.3f}"]
    assert f"{script.mean_and_stderr(amortized)[0]:8.3f}" in text.splitlines()[1]
    assert "validation -IWAE (k = 2) on all 20 validation images" in text


def test_retraining_refuses_a_guide_with_no_parameters_of_its_own(gap):
    class Shared(torch.nn.Module):  # one weight, read by the model and the guide alike
        def __init__(self):
            super().__init__()
            self.prior, self.weight = torch.nn.Identity(), torch.nn.Parameter(torch.ones(()))

        def model(self, x):
            z = pyro.sample("z", pyro.distributions.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", pyro.distributions.Normal(self.weight * z, 1.0).to_event(1), obs=x)

        def guide(self, x):
            pyro.sample("z", pyro.distributions.Normal(self.weight * x, 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"the guide has no parameters of its own to train: every parameter is the model's"):
        gap.with_model_fixed(Shared(), torch.ones(4, 3))
