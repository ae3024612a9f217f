"""The ``probgen`` command: ``fit``, ``evaluate``, ``sample``.

``probgen fit vae --data optdigits --epochs 50 --out runs/vae`` trains a model, writes
``model.pt`` (config and weights), ``checkpoints/``, ``loss.png``, ``samples.png`` and
``metrics.json``, and prints the test log-likelihoods. ``probgen evaluate runs/vae`` and
``probgen sample runs/vae`` read what ``fit`` wrote.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import torch

import probgen as pg

from .infer.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["main", "FAMILY_BUILDERS"]


def _build_vae(info, args):
    likelihood = {"binary": "bernoulli", "discrete": "discretized_logistic", "real": "normal"}[info.support]
    return pg.VAE(
        info.event_shape,
        args.latent_dim or 16,
        likelihood=likelihood,
        num_levels=info.num_levels if info.support == "discrete" else None,
        prior=args.prior,
        network=args.network,
    )


# family name -> builder(info, args) -> model. Families add themselves here.
FAMILY_BUILDERS = {"vae": _build_vae}


def _family_arguments(parser):
    parser.add_argument("--latent-dim", type=int, default=None, help="latent dimension (VAE: 16)")
    parser.add_argument("--prior", default="normal", help="VAE prior: normal, mixture, vamp")
    parser.add_argument("--network", default="mlp", choices=["mlp", "conv"], help="VAE networks")


def _samples(model, n):
    if "mean" in inspect.signature(model.sample).parameters:
        return model.sample(n, mean=True)
    return model.sample(n)


def _save_samples(model, info, path, n=64, reference=None):
    samples = _samples(model, n).cpu()
    if info.event_shape == (2,):
        return pg.diagnostics.save_scatter(samples, path, reference=reference, title=f"{model.family} samples")
    return pg.diagnostics.save_sample_grid(samples, path, num_levels=info.num_levels)


def _evaluate(model, x, methods, num_samples, progress=True):
    results = {}
    for method in methods:
        est = pg.log_likelihood(model, x, method=method, num_samples=num_samples)
        print(f"test {method:>5}: {est}")
        results[method] = {
            "mean_nats": est.mean, "stderr_nats": est.stderr, "bits_per_dim": est.bits_per_dim,
            "kind": est.kind, "num_samples": est.num_samples, "num_data": len(est.pointwise),
        }
    return results


def cmd_fit(args):
    data = pg.datasets.load(args.data, root=args.root)
    torch.manual_seed(args.seed)
    model = FAMILY_BUILDERS[args.family](data.info, args)
    out = Path(args.out)
    if (out / "model.pt").exists():
        raise SystemExit(f"error: {out} already holds a model.pt; choose another --out (nothing was overwritten)")
    print(f"fitting {args.family} on {data}")
    result = pg.fit(
        model, data.train, data.valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        device=args.device, seed=args.seed, checkpoint_dir=out / "checkpoints", progress=not args.no_progress,
    )
    print(result)
    save_checkpoint({"config": model.config, "model": model.state_dict(), "data": args.data}, out / "model.pt")
    result.plot(out / "loss.png")
    _save_samples(model, data.info, out / "samples.png", reference=data.test[:2000])
    test = data.test[: args.num_test] if args.num_test else data.test
    methods = [m for m in model.likelihood_methods if m in ("exact", "elbo", "iwae")]
    metrics = {"family": args.family, "data": args.data, "epochs_run": result.epochs_run,
               "best_epoch": result.best_epoch, "history": result.history,
               "test": _evaluate(model, test, methods, args.num_samples)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out}/model.pt, checkpoints/, loss.png, samples.png, metrics.json")


def _load_run(run_dir):
    path = Path(run_dir)
    path = path / "model.pt" if path.is_dir() else path
    state = load_checkpoint(path, required=("model", "config"))
    model = pg.load_model(path)
    return model, state.get("data")


def cmd_evaluate(args):
    model, data_name = _load_run(args.run)
    data = pg.datasets.load(args.data or data_name or "optdigits", root=args.root)
    x = getattr(data, args.split)
    x = x[: args.num_test] if args.num_test else x
    method = args.method if args.method != "auto" else model.likelihood_methods[0]
    _evaluate(model, x, [method], args.num_samples)


def cmd_sample(args):
    model, data_name = _load_run(args.run)
    torch.manual_seed(args.seed)
    path = _save_samples(model, model.info, args.out, n=args.n)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probgen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a model and evaluate it on the test split")
    fit.add_argument("family", choices=sorted(FAMILY_BUILDERS))
    fit.add_argument("--data", default="optdigits", help="dataset name (default: the embedded optdigits)")
    fit.add_argument("--root", default=None, help="folder of downloaded datasets")
    fit.add_argument("--epochs", type=int, default=50)
    fit.add_argument("--batch-size", type=int, default=128)
    fit.add_argument("--lr", type=float, default=1e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="auto")
    fit.add_argument("--out", default="runs/latest")
    fit.add_argument("--num-samples", type=int, default=1000, help="importance samples for the test IWAE")
    fit.add_argument("--num-test", type=int, default=None, help="evaluate on the first N test points only")
    fit.add_argument("--no-progress", action="store_true")
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
    evaluate.set_defaults(handler=cmd_evaluate)

    sample = commands.add_parser("sample", help="draw samples from a fitted model into a PNG")
    sample.add_argument("run")
    sample.add_argument("-n", type=int, default=64)
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=cmd_sample)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
