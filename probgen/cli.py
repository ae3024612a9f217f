"""The ``probgen`` command: ``fit``, ``evaluate``, ``sample``, ``compare``.

``probgen fit vae --data optdigits --epochs 50 --out runs/vae`` trains a model, writes
``model.pt`` (config and weights), ``checkpoints/``, ``loss.png``, ``samples.png`` and
``metrics.json``, and prints the test log-likelihoods. ``--resume`` continues an interrupted
run from its last checkpoint; ``--tensorboard DIR`` writes TensorBoard logs. The same command
runs data-parallel under ``torchrun --nproc_per_node=N -m probgen.cli fit ...`` (every rank
trains and scores its share of the test points; rank 0 writes). ``probgen evaluate runs/vae``
and ``probgen sample runs/vae`` read what ``fit`` wrote.

Every option and every file a command will write is checked before any data are loaded; a
mistake ends in one line on stderr and exit status 2, and nothing is overwritten.

``probgen compare --data optdigits --out runs/compare`` trains every family that is available
on a small budget (``--budget smoke|quick|full``), prints the comparison table of their test
log-likelihoods (:func:`probgen.compare`), and writes ``table.md``, ``table.csv``,
``compare.png``, ``samples_<family>.png``, ``idata_<family>.nc`` (ArviZ), ``khat_<family>.png``
and ``models/<family>.pt``. A family that fails is reported in the table and on stderr, the
others still run, and the command exits with an error naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

import probgen as pg

from .checks import (
    integer,
    layer_sizes,
    new_file,
    non_negative_number,
    number,
    positive_int,
    positive_number,
    seed,
    writable_folder,
)
from .infer.checkpoint import load_checkpoint
from .infer.distributed import exit_process, launched
from .infer.likelihood import LikelihoodEstimate
from .diagnostics.plots import save_density
from .nn import ACTIVATIONS

__all__ = ["main", "FAMILY_BUILDERS", "COMPARE_BUDGETS", "budget_epochs"]


def _build_vae(info, args):
    latent_dim = 16 if args.latent_dim is None else args.latent_dim
    return pg.VAE(info, latent_dim, prior=args.prior, posterior=args.posterior, network=args.network)


def _build_hvae(info, args):
    latent_dims = (16, 8) if args.latent_dims is None else args.latent_dims
    # options left unset on the command line keep the model's defaults
    optional = {name: getattr(args, name) for name in ("hidden", "activation", "num_pseudo_inputs", "pseudo_inputs")
                if getattr(args, name) is not None}
    return pg.HierarchicalVAE(info, latent_dims, inference=args.inference, top_down_path=args.top_down_path,
                              merge=args.merge, prior=args.prior, encoder_noise=args.encoder_noise,
                              generative_dropout=args.generative_dropout, **optional)


def _build_flow(info, args):
    return pg.Flow(info, args.flow, num_layers=args.flow_layers, hidden=args.flow_hidden,
                   dequantization=args.dequantization)


def _build_diffusion(info, args):
    return pg.Diffusion(info, num_steps=args.num_steps, schedule=args.schedule, parameterization=args.parameterization)


def _build_gan(info, args):
    # penalties left unset on the command line keep the model's measured defaults
    weights = {name: getattr(args, name) for name in ("r1_weight", "gp_weight") if getattr(args, name) is not None}
    latent_dim = (2 if info.event_shape == (2,) else 16) if args.latent_dim is None else args.latent_dim
    return pg.GAN(info, latent_dim, loss=args.loss,
                  spectral_norm=args.spectral_norm, pack=args.pack, **weights)


# family name -> builder(info, args) -> model; each model follows the data's description
FAMILY_BUILDERS = {"vae": _build_vae, "hvae": _build_hvae, "flow": _build_flow, "diffusion": _build_diffusion,
                   "gan": _build_gan}


def _integers(text: str) -> tuple[int, ...]:
    """``"32,16"`` -> ``(32, 16)``: the command line's form of a sequence of sizes."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 32,16, got {text!r}") from None


def _family_arguments(parser):
    parser.add_argument("--latent-dim", type=int, default=None, help="latent dimension (VAE: 16)")
    parser.add_argument("--latent-dims", type=_integers, default=None,
                        help="HVAE: sizes of the layers of latents, z1 first, comma-separated (default: 16,8)")
    parser.add_argument("--inference", default="bottom-up", choices=["bottom-up", "top-down"],
                        help="HVAE: the guide's order (top-down: the ladder VAE)")
    parser.add_argument("--top-down-path", action="store_true",
                        help="HVAE: a deterministic top-down path, so that each layer's prior and the decoder read "
                             "every layer above (the LVAE/NVAE form; default: the Markov chain)")
    parser.add_argument("--merge", default=None, choices=["precision", "concat"],
                        help="HVAE, top-down guide: one head reading the data's features and the state above (concat, "
                             "the default: Tomczak & Welling's q(z1 | x, z2)), or the ladder's precision-weighted merge "
                             "with the prior")
    parser.add_argument("--hidden", type=_integers, default=None,
                        help="HVAE: hidden sizes of every network, comma-separated (default: the model's, 256,256)")
    parser.add_argument("--activation", default=None, choices=sorted(ACTIVATIONS),
                        help="HVAE: the networks' hidden units (default: the model's, silu; gated: Tomczak & Welling's)")
    parser.add_argument("--num-pseudo-inputs", type=int, default=None,
                        help="HVAE with --prior vamp: the VampPrior's pseudo-inputs (default: the model's, 50)")
    parser.add_argument("--pseudo-inputs", default=None, choices=["uniform", "clamped"],
                        help="HVAE with --prior vamp: free pseudo-inputs started uniform in [0, 1] (the default), or "
                             "started at 0.05 and read clamped to [0, 1] (Tomczak & Welling's final code)")
    parser.add_argument("--encoder-noise", type=float, default=0.0,
                        help="HVAE: the guide reads each training point with Gaussian noise of this standard deviation "
                             "added (a regularizer of the encoder; default 0: none)")
    parser.add_argument("--generative-dropout", type=float, default=0.0,
                        help="HVAE: dropout with this probability on the generative networks' hidden units in training "
                             "(default 0: none)")
    parser.add_argument("--loss", default="nonsaturating", choices=["nonsaturating", "hinge", "wgan-gp"], help="GAN loss")
    parser.add_argument("--spectral-norm", action="store_true", help="GAN: spectrally normalized discriminator")
    parser.add_argument("--pack", type=int, default=1,
                        help="GAN: the discriminator scores packs of N samples (PacGAN; batches must hold multiples of N)")
    parser.add_argument("--r1-weight", type=float, default=None,
                        help="GAN: gamma of the R1 penalty (gamma/2) E|grad D(x)|^2 on the data (0 = none; default: the model's)")
    parser.add_argument("--gp-weight", type=float, default=None,
                        help="GAN: lambda of the WGAN-GP gradient penalty (default: the model's, 10)")
    parser.add_argument("--prior", default="normal", help="VAE prior (HVAE: its top layer's): normal, mixture, vamp, or a flow kind")
    parser.add_argument("--network", default="mlp", choices=["mlp", "conv"], help="VAE networks")
    parser.add_argument("--posterior", default="normal", help="VAE posterior: normal, iaf, nsf, realnvp, nsf_coupling")
    parser.add_argument("--flow", default="nsf", help="flow kind: nsf, maf, iaf, realnvp, nsf_coupling")
    parser.add_argument("--flow-layers", type=int, default=5, help="flow steps")
    parser.add_argument("--flow-hidden", type=int, default=64, help="width of the flow's conditioner networks")
    parser.add_argument("--dequantization", default="uniform", choices=["uniform", "variational"],
                        help="flow on discrete data: dequantization noise")
    parser.add_argument("--num-steps", type=int, default=None, help="diffusion: T steps (default: continuous time)")
    parser.add_argument("--schedule", default="linear", choices=["linear", "cosine", "learned"], help="diffusion schedule")
    parser.add_argument("--parameterization", default="eps", choices=["eps", "v", "x0"], help="diffusion network output")


def _samples(model, n, **options):
    unknown = sorted(set(options) - set(model.sample_options))
    if unknown:
        raise ValueError(f"{model.family} sampling takes no {', '.join('--' + name for name in unknown)}")
    return model.sample(n, mean=True, **options)


def _save_samples(model, info, path, n=64, reference=None, **options):
    samples = _samples(model, n, **options).cpu()
    if info.event_shape == (2,):
        return pg.diagnostics.save_scatter(samples, path, reference=reference, title=f"{model.family} samples")
    return pg.diagnostics.save_sample_grid(samples, path, num_levels=info.num_levels)


def _is_main() -> bool:
    """Whether this process writes files and prints: always, except on ranks other than 0
    of a torchrun launch."""
    return int(os.environ.get("RANK", "0")) == 0


def _evaluate(model, x, methods, num_samples, sharded=False, **options):
    results = {}
    for method in methods:
        est = pg.log_likelihood(model, x, method=method, num_samples=num_samples, sharded=sharded, **options)
        if _is_main():
            print(f"test {method:>5}: {est}")
        results[method] = {
            "mean_nats": est.mean, "stderr_nats": est.stderr, "bits_per_dim": est.bits_per_dim,
            "kind": est.kind, "num_samples": est.num_samples, "num_data": len(est.pointwise),
        }
    return results


#: the most samples ``probgen sample`` draws into one figure
MAX_FIGURE_SAMPLES = 10_000


def _optional(check):
    return lambda value, name: None if value is None else check(value, name)


# every numeric option of every command, by its attribute: the check it gets before any work
_OPTION_CHECKS = {
    "epochs": _optional(positive_int), "batch_size": _optional(positive_int), "lr": _optional(positive_number), "seed": seed,
    "num_samples": _optional(positive_int), "num_test": _optional(positive_int), "latent_dim": _optional(positive_int),
    "latent_dims": _optional(layer_sizes),
    "flow_layers": positive_int, "flow_hidden": positive_int, "pack": positive_int, "num_steps": _optional(positive_int),
    "r1_weight": _optional(non_negative_number), "gp_weight": _optional(non_negative_number),
    "ais_steps": positive_int, "steps": _optional(positive_int), "refine": lambda value, name: integer(value, name, 0),
    "n": lambda value, name: integer(value, name, 1, MAX_FIGURE_SAMPLES),
    "hidden": _optional(layer_sizes), "num_pseudo_inputs": _optional(positive_int),
    "encoder_noise": non_negative_number, "generative_dropout": lambda value, name: number(value, name, 0, 1),
    "ema": _optional(lambda value, name: number(value, name, 0, 1)),
    "objective": _optional(lambda value, name: pg.infer.parse_objective(value)),
}


def _check_options(args) -> None:
    """The command's numeric options and device, checked before any data are loaded; each error
    names the option as it is typed."""
    for attribute, check in _OPTION_CHECKS.items():
        if hasattr(args, attribute):
            check(getattr(args, attribute), "-n" if attribute == "n" else "--" + attribute.replace("_", "-"))
    if hasattr(args, "device"):
        pg.infer.resolve_device(args.device)


def _check_outputs(out, names, *, overwrite=False) -> Path:
    """``out`` as a folder that can be written, holding none of ``names`` (unless
    ``overwrite``: a resumed run rewrites its own outputs); nothing is created yet."""
    out = writable_folder(out, "--out")
    for name in names:
        new_file(out / name, "--out", overwrite=overwrite)
    return out


FIT_OUTPUTS = ("model.pt", "loss.png", "samples.png", "metrics.json", "density.png")


def cmd_fit(args):
    _check_options(args)
    checkpoints = writable_folder(args.out, "--out") / "checkpoints"
    if not args.resume and (checkpoints / "last.pt").exists():
        raise FileExistsError(f"{args.out} holds the checkpoints of an earlier run; pass --resume to continue it, or "
                              "choose another --out (nothing was overwritten)")
    out = _check_outputs(args.out, FIT_OUTPUTS, overwrite=args.resume)
    data = pg.datasets.load(args.data, root=args.root)
    pg.infer.seed_everything(args.seed)
    model = FAMILY_BUILDERS[args.family](data.info, args)
    main = _is_main()  # under torchrun every rank trains and scores its share of the test points; rank 0 writes
    if main:
        print(f"fitting {args.family} on {data}")
    result = pg.fit(
        model, data.train, data.valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        objective=args.objective, ema=args.ema, device=args.device, seed=args.seed, checkpoint_dir=checkpoints,
        resume=args.resume, progress=not args.no_progress, log_dir=args.tensorboard,
    )
    if main:  # the trained model is saved before anything else can fail
        print(result)
        pg.save_model(model, out / "model.pt", data=args.data)
        pg.diagnostics.save_loss_curve(result.history, out / "loss.png", title=f"{args.family} on {args.data}")
        _save_samples(model, data.info, out / "samples.png", reference=data.test[:2000])
        if data.info.event_shape == (2,) and "exact" in model.likelihood_methods:
            # an exact density on 2-D data (a flow): draw it beside the data
            save_density(
                lambda grid: pg.log_likelihood(model, grid, method="exact", batch_size=len(grid)).pointwise,
                out / "density.png", reference=data.test, title=f"{args.family} density",
            )
            print(f"wrote {out}/density.png")
    test = pg.datasets.random_subset(data.test, args.num_test)
    methods = [m for m in model.likelihood_methods if m in ("exact", "elbo", "iwae")]
    scores = _evaluate(model, test, methods, args.num_samples, sharded=True)
    if not main:
        return
    metrics = {"family": args.family, "data": args.data, "epochs_run": result.epochs_run,
               "best_epoch": result.best_epoch, "history": result.history, "test": scores}
    if args.data in ("ring8", "grid25"):  # the PacGAN mode-collapse benchmarks
        coverage = pg.metrics.mode_coverage(model.sample(pg.metrics.PROTOCOL_SAMPLES).cpu(), args.data)
        print(f"mode coverage: {coverage}")
        metrics["mode_coverage"] = {"modes": coverage.modes_covered, "high_quality": coverage.high_quality}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out}/model.pt, checkpoints/, loss.png, samples.png, metrics.json")


def _load_run(run_dir):
    path = Path(run_dir)
    path = path / "model.pt" if path.is_dir() else path
    state = load_checkpoint(path, required=("model", "config"))
    model = pg.load_model(path)
    return model, state.get("data")


def _obs_noise(value):
    """``--obs-noise``: ``"auto"`` or a positive number."""
    if value is None or value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--obs-noise must be 'auto' or a positive number, got {value!r}") from None
    return positive_number(number, "--obs-noise")


def cmd_evaluate(args):
    _check_options(args)
    obs_noise = _obs_noise(args.obs_noise)
    model, data_name = _load_run(args.run)
    data = pg.datasets.load(args.data or data_name or "optdigits", root=args.root)
    x = getattr(data, args.split)
    x = pg.datasets.random_subset(x, args.num_test)
    method = pg.infer.resolve_method(model, args.method)
    options = {"num_steps": args.ais_steps} if method == "ais" else {}
    if args.refine:
        if method != "iwae":
            raise ValueError(f"--refine applies to --method iwae, not {method}")
        options["refine"] = args.refine
    if obs_noise is not None and not hasattr(model, "obs_noise"):
        raise ValueError(f"--obs-noise applies to a model with observation noise (a GAN), not a {model.family}")
    if obs_noise == "auto":
        best, _ = pg.infer.select_obs_noise(model, data.valid[:100], **options)
        print(f"obs_noise {best:.4g}, chosen by AIS on 100 validation points")
    elif obs_noise is not None:
        model.obs_noise = obs_noise
    _evaluate(model, x, [method], args.num_samples, **options)


def cmd_sample(args):
    _check_options(args)
    new_file(args.out, "--out")
    model, data_name = _load_run(args.run)
    pg.infer.seed_everything(args.seed)
    options = {name: value for name, value in (("steps", args.steps), ("sampler", args.sampler)) if value is not None}
    path = _save_samples(model, model.info, args.out, n=args.n, **options)
    print(f"wrote {path}")


# --budget of `probgen compare`: epochs, and the epochs of families that need more (a GAN's
# adversarial game needs about 1,000 steps before its optdigits samples are digits of every
# class: benchmarks/defaults.py); training, validation and test points (None: all);
# importance samples per test point; AIS settings for decoder models (a GAN); the points and
# samples of each family's InferenceData
COMPARE_BUDGETS = {
    "smoke": {"epochs": 1, "family_epochs": {}, "num_train": 256, "num_valid": 64, "num_test": 32, "num_samples": 25,
              "ais": {"num_samples": 8, "num_steps": 10, "leapfrog_steps": 2}, "idata_points": 16, "idata_samples": 25},
    "quick": {"epochs": 10, "family_epochs": {"gan": 40}, "num_train": None, "num_valid": 300, "num_test": 200,
              "num_samples": 100, "ais": {"num_samples": 16, "num_steps": 50, "leapfrog_steps": 5}, "idata_points": 12,
              "idata_samples": 25},
    "full": {"epochs": 100, "family_epochs": {"gan": 400}, "num_train": None, "num_valid": None, "num_test": None,
             "num_samples": 1000, "ais": {"num_samples": 100, "num_steps": 500, "leapfrog_steps": 10},
             "idata_points": 500, "idata_samples": 200},
}


def budget_epochs(budget: dict, family: str) -> int:
    """The epochs a compare budget gives a family."""
    return budget["family_epochs"].get(family, budget["epochs"])


def _fail(failures, family, stage, error):
    message = f"{stage} failed: {type(error).__name__}: {error}"
    failures[family] = message
    print(f"error: {family}: {message}", file=sys.stderr)


def _train_family(family, data, budget, args, out):
    """Build, fit and save one family; give a decoder model without observation noise (a GAN)
    the noise that AIS needs, chosen on validation data."""
    pg.infer.seed_everything(args.seed)
    model = FAMILY_BUILDERS[family](data.info, args)
    train = data.train[: budget["num_train"]] if budget["num_train"] else data.train
    valid = data.valid[: budget["num_valid"]] if budget["num_valid"] else data.valid
    result = pg.fit(model, train, valid, epochs=args.epochs or budget_epochs(budget, family), batch_size=args.batch_size,
                    lr=args.lr, device=args.device, seed=args.seed, progress=not args.no_progress)
    print(f"{family}: {result}")
    if "ais" in model.likelihood_methods and getattr(model, "obs_noise", 0.0) is None:
        ais = budget["ais"]
        sigma, _ = pg.infer.select_obs_noise(model, valid[:32], num_samples=4, num_steps=ais["num_steps"],
                                             leapfrog_steps=ais["leapfrog_steps"])
        print(f"{family}: observation noise {sigma:.4g} chosen by AIS on validation data")
    pg.save_model(model, out / "models" / f"{family}.pt", data=args.data)
    _save_samples(model, data.info, out / f"samples_{family}.png", reference=data.test[:2000])
    return model


def cmd_compare(args):
    if launched():
        raise ValueError("probgen compare runs in one process: launch it without torchrun (probgen fit trains "
                         "one family on several)")
    budget = COMPARE_BUDGETS[args.budget]
    families = args.families.split(",") if args.families else sorted(FAMILY_BUILDERS)
    unknown = sorted(set(families) - set(FAMILY_BUILDERS))
    if unknown:
        raise ValueError(f"unknown families {unknown}; available: {sorted(FAMILY_BUILDERS)}")
    _check_options(args)
    out = _check_outputs(args.out, ["table.md", "table.csv", "compare.png"] + [
        name.format(family) for family in families
        for name in ("samples_{}.png", "idata_{}.nc", "khat_{}.png", "models/{}.pt")
    ])
    data = pg.datasets.load(args.data, root=args.root)
    num_test = args.num_test or budget["num_test"]
    test = pg.datasets.random_subset(data.test, num_test)
    num_samples = args.num_samples or budget["num_samples"]
    print(f"comparing {', '.join(families)} on {data} (budget {args.budget!r}, {len(test)} test points)")

    models, failures = {}, {}
    for family in families:
        try:
            models[family] = _train_family(family, data, budget, args, out)
        except Exception as error:  # noqa: BLE001 -- one family's failure must not hide the others
            _fail(failures, family, "training", error)
    if not models:
        raise SystemExit(f"error: no family could be trained: {failures}")

    table = pg.compare(models, test, num_samples=num_samples, estimator_options={"ais": budget["ais"]},
                       on_error="report")
    for family, message in failures.items():
        table.add_failure(family, message)
    for row in table.rows:
        if row.error and row.model not in failures:
            _fail(failures, row.model, "scoring", RuntimeError(row.error))
    print(table)
    (out / "table.md").write_text(f"# {args.data}: test log-likelihood, budget {args.budget!r}\n\n" + table.to_markdown())
    table.to_dataframe().to_csv(out / "table.csv")
    pg.diagnostics.save_comparison(table, out / "compare.png", title=f"{args.data}: test log-likelihood per data point")

    idata_x = test[: budget["idata_points"]]
    # bounds the memory of a long chain of latents (a diffusion model's trace holds every level)
    idata_batch = max(1, 2**17 // (budget["idata_samples"] * data.info.num_dims))
    for family, estimate in table.estimates.items():
        part = LikelihoodEstimate(estimate.pointwise[: len(idata_x)], estimate.method, estimate.is_bound,
                                  estimate.num_samples, estimate.num_dims, estimate.kind, estimate.density)
        try:
            idata = pg.to_inference_data(models[family], idata_x, num_samples=budget["idata_samples"],
                                         log_likelihood=part, batch_size=idata_batch, seed=args.seed, warn=False)
            idata.to_netcdf(str(out / f"idata_{family}.nc"))
            k = torch.as_tensor(idata.sample_stats["pareto_k"].values)
            print(f"{family}: Pareto k of the importance weights on {len(k)} test points: {int((k <= 0.5).sum())} "
                  f"good (<= 0.5), {int(((k > 0.5) & (k <= 0.7)).sum())} ok, {int((k > 0.7).sum())} bad (> 0.7)")
            pg.diagnostics.plot_khat(idata, out / f"khat_{family}.png", title=f"{family}: Pareto k per test point")
        except Exception as error:  # noqa: BLE001
            _fail(failures, family, "InferenceData export", error)
    print(f"wrote {out}/table.md, table.csv, compare.png, samples_*.png, idata_*.nc, khat_*.png, models/")
    if failures:
        raise SystemExit(f"error: {len(failures)} of {len(families)} families failed: "
                         + "; ".join(f"{family}: {message}" for family, message in failures.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probgen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a model and evaluate it on the test split")
    fit.add_argument("family", choices=sorted(FAMILY_BUILDERS))
    fit.add_argument("--data", default="optdigits", help="dataset name (default: the embedded optdigits)")
    fit.add_argument("--root", default=None, help="folder of downloaded datasets")
    fit.add_argument("--epochs", type=int, default=50)
    fit.add_argument("--batch-size", type=int, default=None, help="default: the model's, else 128")
    fit.add_argument("--lr", type=float, default=None, help="default: the model's, else 1e-3")
    fit.add_argument("--objective", default=None,
                     help="the training objective by name, e.g. elbo, iwae:10, dreg:10 (the IWAE bound with the doubly "
                          "reparameterized gradient), warmup:100 (KL warm-up over 100 epochs), hinge:5 (default: the "
                          "model's)")
    fit.add_argument("--ema", type=float, default=None,
                     help="validate, checkpoint and keep an exponential moving average of the weights with this decay, "
                          "e.g. 0.999 (default: the model's, most have none; 0: none)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="auto")
    fit.add_argument("--out", default="runs/latest")
    fit.add_argument("--num-samples", type=int, default=1000, help="importance samples for the test IWAE")
    fit.add_argument("--num-test", type=int, default=None, help="evaluate on a fixed random subset of N test points")
    fit.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its last checkpoint (same options and seed: another "
                          "--objective, --ema, --batch-size or --seed is refused)")
    fit.add_argument("--no-progress", action="store_true")
    fit.add_argument("--tensorboard", default=None, metavar="DIR",
                     help="write TensorBoard logs there (needs the tensorboard package)")
    _family_arguments(fit)
    fit.set_defaults(handler=cmd_fit)

    evaluate = commands.add_parser("evaluate", help="log-likelihood of a fitted model")
    evaluate.add_argument("run", help="the --out folder of 'probgen fit', or a model.pt")
    evaluate.add_argument("--method", default="auto")
    evaluate.add_argument("--num-samples", type=int, default=1000)
    evaluate.add_argument("--data", default=None)
    evaluate.add_argument("--root", default=None)
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.add_argument("--num-test", type=int, default=None)
    evaluate.add_argument("--obs-noise", default=None, help="GAN: observation noise for AIS (real data: the Gaussian's sigma; levels: the "
                          "discretized logistic's scale in levels; binary data: the flip probability), or 'auto' "
                          "(chosen on validation data)")
    evaluate.add_argument("--ais-steps", type=int, default=500, help="AIS: annealing steps")
    evaluate.add_argument("--refine", type=int, default=0,
                          help="IWAE: refine each data point's proposal for this many steps first (a tighter bound)")
    evaluate.set_defaults(handler=cmd_evaluate)

    sample = commands.add_parser("sample", help="draw samples from a fitted model into a PNG")
    sample.add_argument("run")
    sample.add_argument("-n", type=int, default=64, help=f"samples in the figure (at most {MAX_FIGURE_SAMPLES})")
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--steps", type=int, default=None, help="diffusion: reverse steps (respaced)")
    sample.add_argument("--sampler", default=None, choices=["ancestral", "ddim"], help="diffusion sampler")
    sample.set_defaults(handler=cmd_sample)

    compare = commands.add_parser("compare", help="train every family briefly and compare their test log-likelihoods")
    compare.add_argument("--data", default="optdigits", help="dataset name (default: the embedded optdigits)")
    compare.add_argument("--root", default=None, help="folder of downloaded datasets")
    compare.add_argument("--budget", default="quick", choices=sorted(COMPARE_BUDGETS),
                         help="smoke: seconds; quick: a few minutes on 2 CPU cores; full: longer, all test points")
    compare.add_argument("--families", default=None, help=f"comma-separated subset of {','.join(sorted(FAMILY_BUILDERS))}")
    compare.add_argument("--epochs", type=int, default=None, help="override the budget's epochs (for every family)")
    compare.add_argument("--batch-size", type=int, default=None, help="default: each model's, else 128")
    compare.add_argument("--lr", type=float, default=None, help="default: each model's, else 1e-3")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--device", default="auto")
    compare.add_argument("--out", default="runs/compare")
    compare.add_argument("--num-samples", type=int, default=None, help="override the budget's importance samples")
    compare.add_argument("--num-test", type=int, default=None, help="override the budget's test points")
    compare.add_argument("--no-progress", action="store_true")
    _family_arguments(compare)
    compare.set_defaults(handler=cmd_compare)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    code = 0
    try:
        args.handler(args)
    # the user's errors, each raised by probgen's own checks: one line and exit status 2
    except (ValueError, FileNotFoundError, FileExistsError, TypeError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    if launched():  # a torchrun worker: leave without the interpreter's finalization (exit_process)
        exit_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
