"""The obvious call, measured: each family built from ``data.info`` and trained by ``pg.fit``
with nothing but a budget (epochs), against a reference where there is one.

Four parts, one process, each printing a table:

1. **ring8**: ``pg.GAN(data.info, 2)`` and ``pg.fit(gan, data.train, epochs=10)`` (1,570
   steps at the default batch of 128), beside a plain 30-line PyTorch GAN (two 2 x 128 ReLU
   MLPs, Adam lr 1e-3 with betas (0.5, 0.999), batch 256, 1,560 steps): modes covered (PacGAN
   protocol: 2,500 samples, 3 standard deviations) and the high-quality fraction, per seed.
   Target: at least 7 of 8 modes on every seed, the reference's level.
2. **grid25**: the same call with ``epochs=100`` (15,700 steps: the step count of
   ``benchmarks/gan.py``'s full coverage budget, 200 epochs at batch 256). Target: 25 of 25
   modes with at least 90% high-quality samples on every seed.
3. **digits**: what ``probgen compare --data optdigits`` (quick budget) does for the GAN,
   through the CLI's own builder and budget, on its 64-sample grid: how many of the 10 digit
   classes appear among the samples that a classifier trained on the labelled optdigits
   training images (a 64-128-10 MLP; its test accuracy is printed) assigns a class with
   probability at least 0.9, and the share of such samples; beside it the same for 64 random
   test images, and the spread of the grid (mean pairwise Euclidean distance) over the test
   images' spread. A collapsed generator shows one or two classes (and a diversity of noise
   can pass the spread while failing the classes). Target: at least 8 classes on every seed.
   Also the kind of the GAN's likelihood row: an AIS estimate of a probability of the
   levels, not a density. A plain PyTorch DCGAN (same networks, Adam lr 1e-3, betas (0.5,
   0.999)) reached 3 to 5 classes after 260 steps (the old 10 epochs) and 9 to 10 after
   1,000, which is why the quick budget gives the GAN 40 epochs (1,040 steps).
4. **diffusion**: 1-D N(0, 1) data (10,000 points), ``pg.Diffusion((1,))`` and ``pg.fit``
   with 30 epochs; 4,000 samples per seed. The sample mean and standard deviation as z-scores
   (distance from 0 and 1 in standard errors). Target: within 3 on every seed. Beside it the
   same training with ``ema=0`` (the last iterate's weights, the behaviour before the model's
   default weight average), and, for one seed, the sample mean after each of the last epochs
   of that run: how far one epoch's weights move it.

    python benchmarks/defaults.py                                    # everything, 3 seeds (grid25 is long)
    python benchmarks/defaults.py --parts ring8,digits,diffusion --seeds 3
    python benchmarks/defaults.py --parts grid25 --seeds 5 --first-seed 0
"""

from __future__ import annotations

import argparse
import math
import time
from importlib import resources

import numpy as np
import torch
from torch import nn

import probgen as pg
from probgen.cli import COMPARE_BUDGETS, FAMILY_BUILDERS, budget_epochs, build_parser


def coverage(samples, name):
    result = pg.metrics.mode_coverage(samples, name)
    return result.modes_covered, 100 * result.high_quality


def pg_gan(name, seed, epochs):
    data = pg.datasets.load(name)
    torch.manual_seed(seed)
    gan = pg.GAN(data.info, 2)
    began = time.perf_counter()
    pg.fit(gan, data.train, epochs=epochs, seed=seed, progress=False, device="cpu")
    seconds = time.perf_counter() - began
    gan.eval()
    torch.manual_seed(10_000 + seed)
    return (*coverage(gan.sample(pg.metrics.PROTOCOL_SAMPLES), name), seconds)


def plain_gan(name, seed, steps=1560, batch=256):
    """The reference: a GAN as one writes it in plain PyTorch in 30 lines."""
    data = pg.datasets.load(name).train
    torch.manual_seed(seed)
    generator = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    discriminator = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    opt_g = torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), 1e-3, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    began = time.perf_counter()
    for step in range(steps):
        real = data[torch.randint(len(data), (batch,))]
        fake = generator(torch.randn(batch, 2))
        loss_d = bce(discriminator(real), torch.ones(batch, 1)) + bce(discriminator(fake.detach()), torch.zeros(batch, 1))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = bce(discriminator(fake), torch.ones(batch, 1))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    seconds = time.perf_counter() - began
    torch.manual_seed(10_000 + seed)
    with torch.no_grad():
        return (*coverage(generator(torch.randn(pg.metrics.PROTOCOL_SAMPLES, 2)), name), seconds)


def table(title, rows, target):
    print(f"\n{title}")
    print(f"{'model':<34} {'seed':>4} {'modes':>6} {'high quality %':>15} {'s':>6}")
    for model, seed, modes, quality, seconds in rows:
        print(f"{model:<34} {seed:>4} {modes:>6} {quality:>15.1f} {seconds:>6.0f}")
    print(f"target: {target}")


def ring8(args):
    rows = []
    for seed in args.seed_list:
        rows.append(("pg.GAN(info, 2), pg.fit defaults", seed, *pg_gan("ring8", seed, 10)))
        rows.append(("plain PyTorch GAN (reference)", seed, *plain_gan("ring8", seed)))
        print(*rows[-2], sep=" | ", flush=True)
        print(*rows[-1], sep=" | ", flush=True)
    table("ring8: 10 epochs of pg.fit defaults (1,570 steps) beside the plain GAN (1,560 steps)", rows,
          "pg.GAN covers >= 7 of 8 modes on every seed")


def grid25(args):
    rows = []
    for seed in args.seed_list:
        rows.append(("pg.GAN(info, 2), pg.fit defaults", seed, *pg_gan("grid25", seed, 100)))
        print(*rows[-1], sep=" | ", flush=True)
    table("grid25: 100 epochs of pg.fit defaults (15,700 steps)", rows,
          "25 of 25 modes and >= 90% high quality on every seed")


def spread(images):
    flat = images.reshape(len(images), -1).double()
    return (torch.cdist(flat, flat).sum() / (len(flat) * (len(flat) - 1))).item()


def digit_classifier():
    """A 64-128-10 MLP trained on the labelled optdigits training images (the loader keeps
    no labels; the benchmark reads them from the embedded file), and its test accuracy."""
    with resources.files("probgen.datasets").joinpath("data/optdigits.npz").open("rb") as f:
        arrays = np.load(f)
        images = {split: torch.tensor(arrays[f"{split}_images"], dtype=torch.float32).reshape(-1, 64) / 16
                  for split in ("train", "test")}
        labels = {split: torch.tensor(arrays[f"{split}_labels"]).long() for split in ("train", "test")}
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(60):
        for batch in torch.randperm(len(images["train"])).split(128):
            loss = nn.functional.cross_entropy(net(images["train"][batch]), labels["train"][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (net(images["test"]).argmax(1) == labels["test"]).float().mean().item()
    return net, accuracy


def digit_classes(net, images, threshold=0.9):
    """Distinct classes among the images classified with probability >= threshold, and their share."""
    with torch.no_grad():
        confidence, classes = torch.softmax(net(images.reshape(len(images), 64) / 16), 1).max(1)
    sure = confidence >= threshold
    return len(set(classes[sure].tolist())), sure.float().mean().item()


def digits(args):
    data = pg.datasets.load("optdigits")
    budget = COMPARE_BUDGETS["quick"]
    epochs = budget_epochs(budget, "gan")
    cli = build_parser().parse_args(["compare"])
    test64 = pg.datasets.random_subset(data.test, 64)
    net, accuracy = digit_classifier()
    reference = spread(test64)
    rows = []
    for seed in args.seed_list:
        torch.manual_seed(seed)
        gan = FAMILY_BUILDERS["gan"](data.info, cli)
        began = time.perf_counter()
        pg.fit(gan, data.train, data.valid[: budget["num_valid"]], epochs=epochs, seed=seed, progress=False, device="cpu")
        seconds = time.perf_counter() - began
        gan.eval()
        torch.manual_seed(seed)
        grid = gan.sample(64, mean=True)  # what the sample grid shows
        classes, sure = digit_classes(net, grid.round())
        pg.infer.select_obs_noise(gan, data.valid[:32], num_samples=4, num_steps=budget["ais"]["num_steps"],
                                  leapfrog_steps=budget["ais"]["leapfrog_steps"])
        estimate = pg.log_likelihood(gan, pg.datasets.random_subset(data.test, 50), "ais", 8,
                                     num_steps=budget["ais"]["num_steps"], leapfrog_steps=budget["ais"]["leapfrog_steps"])
        rows.append((f"GAN, seed {seed}", classes, 100 * sure, spread(grid) / reference, gan.obs_noise, estimate, seconds))
        print(*rows[-1], sep=" | ", flush=True)
    classes, sure = digit_classes(net, test64)
    print(f"\ndigits: the GAN of `probgen compare --data optdigits` (quick budget: {epochs} epochs, "
          f"{epochs * math.ceil(len(data.train) / 128)} steps): its 64-sample grid, judged by a digit classifier "
          f"(test accuracy {100 * accuracy:.1f}%)")
    print(f"{'grid':<16} {'classes (p >= 0.9)':>19} {'sure %':>7} {'spread ratio':>13} {'obs scale':>10} "
          f"{'AIS log p(x), 50 test points':>42} {'s':>5}")
    print(f"{'64 test images':<16} {classes:>19} {100 * sure:>7.1f} {1.0:>13.3f}")
    for name, classes, sure, ratio, scale, est, seconds in rows:
        kind = f"{est.mean:.2f} ± {est.stderr:.2f} nats ({est.kind}{', density' if est.density else ''})"
        print(f"{name:<16} {classes:>19} {sure:>7.1f} {ratio:>13.3f} {scale:>10.3g} {kind:>42} {seconds:>5.0f}")
    print("target: >= 8 of 10 digit classes on every seed; the likelihood is a probability of the levels (no density)")


def diffusion(args):
    rows = []
    traced = []
    for seed in args.seed_list:
        torch.manual_seed(100 + seed)
        train = torch.randn(10_000, 1)
        for ema in (None, 0):
            torch.manual_seed(seed)
            model = pg.Diffusion((1,))
            callbacks = [SampleMeanTrace(traced, first=25)] if ema == 0 and seed == args.seed_list[0] else []
            began = time.perf_counter()
            pg.fit(model, train, epochs=30, seed=seed, ema=ema, callbacks=callbacks, progress=False, device="cpu")
            seconds = time.perf_counter() - began
            model.eval()
            torch.manual_seed(1_000 + seed)
            x = model.sample(4_000)
            se = x.std().item() / len(x) ** 0.5
            rows.append((seed, "default (ema 0.999)" if ema is None else "ema=0 (last iterate)", x.mean().item(),
                         x.std().item(), x.mean().item() / se, (x.std().item() - 1) / (se / 2**0.5), seconds))
            print(*rows[-1], sep=" | ", flush=True)
    print("\ndiffusion: 1-D N(0, 1), pg.Diffusion((1,)), 30 epochs of pg.fit, 4,000 samples")
    print(f"{'seed':>4} {'weights':<22} {'mean':>8} {'sd':>7} {'z(mean)':>8} {'z(sd)':>7} {'s':>5}")
    for seed, name, mean, sd, z_mean, z_sd, seconds in rows:
        print(f"{seed:>4} {name:<22} {mean:>8.4f} {sd:>7.4f} {z_mean:>8.2f} {z_sd:>7.2f} {seconds:>5.0f}")
    if traced:
        print(f"last-iterate weights of seed {args.seed_list[0]}, after each epoch: sample mean (sd) of 4,000 draws, "
              "250 steps: " + ", ".join(f"{epoch}: {mean:+.3f} ({sd:.3f})" for epoch, mean, sd in traced))
    print("target: |z| <= 3 for the mean and the sd on every seed, with the defaults")


class SampleMeanTrace(pg.infer.Callback):
    """Draws samples after each epoch from ``first`` on (with its own seed, leaving training's
    random stream as it was) and keeps their mean and standard deviation."""

    def __init__(self, out, first):
        self.out, self.first = out, first

    def on_epoch_end(self, state):
        if state.epoch >= self.first:
            rng = torch.get_rng_state()
            torch.manual_seed(7)
            state.model.eval()
            x = state.model.sample(4_000, steps=250)
            state.model.train()
            torch.set_rng_state(rng)
            self.out.append((state.epoch, x.mean().item(), x.std().item()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="ring8,grid25,digits,diffusion")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    parts = {"ring8": ring8, "grid25": grid25, "digits": digits, "diffusion": diffusion}
    for part in args.parts.split(","):
        parts[part](args)


if __name__ == "__main__":
    main()
