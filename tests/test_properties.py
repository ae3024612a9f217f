"""Property-based tests of probgen's promises on bad input (the ``hypothesis`` library).

Each public entry point is driven with generated shapes, dtypes, values and options, and
every call must either succeed with a result in the support or raise one of the documented
exception types (:data:`DOCUMENTED`) from probgen's own checks: the innermost frame of the
traceback lies in probgen, never in torch, Pyro or NumPy. Where the right answer is known
(data in or off a model's support, an option in or out of its range) the outcome must match
it both ways: what is valid is accepted, what is not is refused.

The default run tries a few examples of each property (the ``fast`` parameter); the same
properties run with many more under ``pytest -m slow``.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probgen as pg
from probgen.cli import MAX_FIGURE_SAMPLES, main
from probgen.infer.checkpoint import save_checkpoint

#: the exception types probgen raises on bad input (docs/guarantees.rst); CheckpointError is a
#: ValueError, NonFiniteLossError a FloatingPointError
DOCUMENTED = (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError)
PACKAGE = Path(pg.__file__).resolve().parent

EXAMPLES = [pytest.param(25, id="fast"), pytest.param(1000, id="thorough", marks=pytest.mark.slow)]


def run_property(examples, strategy, check):
    """Run ``check`` on ``examples`` draws of ``strategy``."""

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def prop(drawn):
        check(drawn)

    prop()


def outcome(call):
    """``(result, None)`` or ``(None, error)`` for a documented error raised by probgen's own
    code; any other exception fails the test."""
    try:
        return call(), None
    except DOCUMENTED as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        assert Path(frame.filename).resolve().is_relative_to(PACKAGE), (
            f"{type(error).__name__}: {error} was raised in {frame.filename}:{frame.lineno}, not by probgen's checks"
        )
        assert str(error), f"{type(error).__name__} without a message"
        return None, error


# -- data: shapes, dtypes, values ---------------------------------------------------------

EVENT = (4,)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]
VALUES = ["normal", "binary", "levels", "fractional", "negative", "above", "nan", "inf", "huge"]


@st.composite
def batches(draw):
    """A tensor of a generated shape and dtype whose values are of a generated kind."""
    shape = draw(st.one_of(
        st.tuples(st.integers(0, 5)).map(lambda n: (n[0], *EVENT)),  # the right shape, maybe empty
        st.lists(st.integers(0, 5), max_size=3).map(tuple),  # any shape
    ))
    dtype, kind = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(VALUES))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = {
        "normal": lambda: torch.randn(shape, generator=g, dtype=torch.float64),
        "binary": lambda: torch.randint(0, 2, shape, generator=g).double(),
        "levels": lambda: torch.randint(0, 5, shape, generator=g).double(),
        "fractional": lambda: torch.randint(0, 5, shape, generator=g).double() + 0.5,
        "negative": lambda: -1.0 - torch.randint(0, 3, shape, generator=g).double(),
        "above": lambda: 5.0 + torch.randint(0, 3, shape, generator=g).double(),
        "nan": lambda: torch.full(shape, math.nan, dtype=torch.float64),
        "inf": lambda: torch.full(shape, math.inf, dtype=torch.float64),
        "huge": lambda: torch.full(shape, 1e300, dtype=torch.float64),
    }[kind]()
    if x.numel() and kind in ("nan", "inf", "huge"):  # one bad entry among ordinary ones
        x = torch.where(torch.rand(shape, generator=g) < 0.5, x, torch.zeros(shape, dtype=torch.float64))
        x.view(-1)[0] = {"nan": math.nan, "inf": math.inf, "huge": 1e300}[kind]
    return x.to(dtype) if dtype is not torch.bool else x.bool()


def acceptable(x: torch.Tensor, info: pg.DataInfo) -> bool:
    """The oracle: whether a model of ``info`` (float32) must accept ``x``."""
    if not x.is_floating_point() or tuple(x.shape[1:]) != info.event_shape or x.dim() != 2 or len(x) == 0:
        return False
    values = x.double()
    if not torch.isfinite(values.float()).all():  # finite in the model's dtype
        return False
    if info.support == "real":
        return True
    return bool(((values == values.round()) & (values >= 0) & (values <= info.num_levels - 1)).all())


NUM_MODELS = 6  # the models the fixture below builds: every family, and each support


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    real, binary, levels = pg.DataInfo(EVENT, "real"), pg.DataInfo(EVENT, "binary"), pg.DataInfo(EVENT, "discrete", 5)
    gan = pg.GAN(levels, 2, hidden=(8,))
    gan.obs_noise = 0.5
    return [
        (pg.VAE(binary, 2, hidden=(8,)), {"method": "iwae", "num_samples": 4}),
        (pg.Flow(levels, "maf", num_layers=1, hidden=8), {"method": "elbo", "num_samples": 2}),
        (pg.Flow(real, "maf", num_layers=1, hidden=8), {"method": "exact"}),
        (pg.Diffusion(real, num_steps=4), {"method": "elbo", "num_samples": 2}),
        (gan, {"method": "ais", "num_samples": 2, "num_steps": 2}),
        (pg.HierarchicalVAE(levels, (2, 2), hidden=(8,)), {"method": "iwae", "num_samples": 4}),
    ]


# each estimator entry point: (name, models it applies to, call -> per-data-point values)
SCORERS = [
    ("log_likelihood", range(NUM_MODELS), lambda model, options, x: pg.log_likelihood(model, x, batch_size=3, **options).pointwise),
    ("compare", range(NUM_MODELS), lambda model, options, x: torch.as_tensor(
        pg.compare({"m": model}, x, methods=options["method"], num_samples=options.get("num_samples", 1), batch_size=3,
                   estimator_options={"ais": {"num_steps": 2}}).estimates["m"].pointwise)),
    ("psis_khat", [0, 1, 5], lambda model, options, x: pg.diagnostics.psis_khat(model, x, 25, batch_size=3,
                                                                            warn=False).khat),
    ("to_inference_data", [0, 5], lambda model, options, x: torch.as_tensor(
        pg.to_inference_data(model, x, num_samples=25, batch_size=3, warn=False).sample_stats["pareto_k"].values)),
]


@pytest.mark.parametrize("examples", EXAMPLES)
def test_estimators_score_exactly_the_data_in_the_support(models, examples):
    def check(drawn):
        (name, _, score), index, x = drawn
        model, options = models[index]
        values, error = outcome(lambda: score(model, options, x))
        assert (error is None) == acceptable(x, model.info), f"{name}, {model.info}, {x.dtype} {tuple(x.shape)}: {error}"
        if values is not None:
            assert values.shape == (len(x),) and not torch.isnan(values).any(), f"{name}: {values}"

    pairs = st.sampled_from(SCORERS).flatmap(
        lambda scorer: st.tuples(st.just(scorer), st.sampled_from(list(scorer[1])), batches()))
    run_property(examples, pairs, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_fit_trains_on_exactly_the_data_in_the_support(models, examples):
    def check(drawn):
        index, x, with_valid = drawn
        model, _ = models[index]
        noise = getattr(model, "obs_noise", None)
        if noise is not None:
            model.obs_noise = None  # the adversarial game trains the implicit model
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result, error = outcome(lambda: pg.fit(model, x, x if with_valid else None, epochs=1, batch_size=2,
                                               progress=False, device="cpu", ema=0))
        if noise is not None:
            model.obs_noise = noise
        assert (error is None) == acceptable(x, model.info), f"{model.info}, {x.dtype} {tuple(x.shape)}: {error}"
        if error is not None:  # refused before any work: the weights are those it had
            assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        else:
            assert len(result.history["train_loss"]) == 1 and math.isfinite(result.history["train_loss"][0])

    run_property(examples, st.tuples(st.integers(0, NUM_MODELS - 1), batches(), st.booleans()), check)


# -- options: numbers, strings, None, bools -----------------------------------------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e39, 2**32, 0.5, "1", "abc", "", (1,), [2, 3], {}]),
)


def is_int(value, low, high=math.inf):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value, low_exclusive=0.0, high=3.4e38):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and low_exclusive < value < high


FIT_OPTIONS = {  # the option -> whether a value is valid
    "epochs": lambda v: is_int(v, 1),
    "batch_size": lambda v: v is None or is_int(v, 1),
    "lr": lambda v: v is None or is_number(v, high=3.4028234663852886e38 / 2**20),
    "seed": lambda v: is_int(v, 0, 2**32 - 1),
    "clip_grad": lambda v: v is None or is_number(v, high=math.inf),
    "patience": lambda v: v is None or is_int(v, 1),
    "ema": lambda v: v is None or (is_number(v, -math.inf, 1.0) and v >= 0),
    "restore_best": lambda v: isinstance(v, bool),
}


@pytest.mark.parametrize("examples", EXAMPLES)
def test_fit_accepts_exactly_the_valid_options(examples):
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))

    def check(drawn):
        name, value = drawn
        options = {"epochs": 1, name: value}
        if isinstance(value, int) and not isinstance(value, bool) and name == "epochs":
            options[name] = min(value, 3)  # a valid count, kept short
        valid = FIT_OPTIONS[name](options[name])
        torch.manual_seed(0)
        flow = pg.Flow(pg.DataInfo((2,), "real"), "maf", num_layers=1, hidden=4)
        before = {k: v.clone() for k, v in flow.state_dict().items()}
        _, error = outcome(lambda: pg.fit(flow, x, x, progress=False, device="cpu", **options))
        if valid:  # trains, or stops at a non-finite loss (a valid but huge lr) with the loop's own error
            assert error is None or isinstance(error, pg.infer.NonFiniteLossError), f"{name}={value!r}: {error}"
        else:  # refused before any step
            assert error is not None and not isinstance(error, FloatingPointError), f"{name}={value!r}: {error}"
            assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())

    run_property(examples, st.tuples(st.sampled_from(sorted(FIT_OPTIONS)), ANYTHING), check)


CONSTRUCTORS = {  # (family, option) -> (build, whether a value is valid)
    ("vae", "latent_dim"): (lambda v: pg.VAE((3,), v, hidden=(4,)), lambda v: is_int(v, 1)),
    ("vae", "hidden"): (lambda v: pg.VAE((3,), 2, hidden=v), lambda v: isinstance(v, (tuple, list)) and len(v) > 0
                        and all(is_int(s, 1) for s in v)),
    ("gan", "latent_dim"): (lambda v: pg.GAN((3,), v, hidden=(4,)), lambda v: is_int(v, 1)),
    ("gan", "pack"): (lambda v: pg.GAN((3,), 2, hidden=(4,), pack=v), lambda v: is_int(v, 1)),
    ("gan", "r1_weight"): (lambda v: pg.GAN((3,), 2, hidden=(4,), r1_weight=v), lambda v: is_number(v, -1e-300,
                                                                                                     math.inf)),
    ("flow", "num_layers"): (lambda v: pg.Flow((3,), "maf", num_layers=v, hidden=4), lambda v: is_int(v, 1)),
    ("flow", "hidden"): (lambda v: pg.Flow((3,), "maf", num_layers=1, hidden=v), lambda v: is_int(v, 1)),
    ("diffusion", "num_steps"): (lambda v: pg.Diffusion((3,), num_steps=v), lambda v: v is None or is_int(v, 1)),
    ("datainfo", "event_shape"): (lambda v: pg.DataInfo(v, "real"), lambda v: is_int(v, 1) or (
        isinstance(v, (tuple, list)) and len(v) > 0 and all(is_int(s, 1) for s in v))),
}


@pytest.mark.parametrize("examples", EXAMPLES)
def test_constructors_accept_exactly_the_valid_arguments(examples):
    def check(drawn):
        key, value = drawn
        build, valid = CONSTRUCTORS[key]
        if valid(value) and isinstance(value, int) and value > 8:
            value = 8  # a valid size, kept small
        built, error = outcome(lambda: build(value))
        assert (error is None) == valid(value), f"{key}={value!r}: {error}"

    sizes = st.lists(st.one_of(st.integers(-1, 6), st.just(2.5)), max_size=3)
    values = st.one_of(ANYTHING, sizes, sizes.map(tuple))
    run_property(examples, st.tuples(st.sampled_from(sorted(CONSTRUCTORS)), values), check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_every_family_samples_n_points_in_its_support_or_refuses_n(models, examples):
    def check(drawn):
        index, n = drawn
        model, _ = models[index]
        samples, error = outcome(lambda: model.sample(n))
        assert (error is None) == is_int(n, 1, 2**20), f"{model.family}.sample({n!r}): {error}"
        if samples is not None:
            assert samples.shape == (n, *EVENT) and acceptable(samples, model.info)

    counts = st.one_of(st.integers(-2, 6), ANYTHING, st.just(2**40))  # the last more than any memory
    run_property(examples, st.tuples(st.integers(0, NUM_MODELS - 1), counts), check)


# -- checkpoints --------------------------------------------------------------------------

@pytest.mark.parametrize("examples", EXAMPLES)
def test_a_damaged_or_foreign_model_file_is_refused_with_its_path(tmp_path_factory, examples):
    folder = tmp_path_factory.mktemp("files")
    vae = pg.VAE((3,), 2, hidden=(4,))
    good = folder / "good.pt"
    pg.save_model(vae, good)
    entries = st.dictionaries(st.sampled_from(["format", "config", "model", "data", "epoch"]), ANYTHING, max_size=4)

    def check(drawn):
        kind, payload = drawn
        path = folder / "bad.pt"
        if kind == "bytes":
            path.write_bytes(payload)
        elif kind == "truncated":
            path.write_bytes(good.read_bytes()[: max(1, len(good.read_bytes()) * payload // 100)])
        else:
            save_checkpoint(payload, path)
        model, error = outcome(lambda: pg.load_model(path))
        assert error is not None and str(path) in str(error), f"{kind} {payload!r}: {error!r}"
        assert isinstance(error, pg.infer.CheckpointError)

    run_property(examples, st.one_of(
        st.tuples(st.just("bytes"), st.binary(max_size=64)),
        st.tuples(st.just("truncated"), st.integers(1, 99)),
        st.tuples(st.just("dict"), entries),
        st.tuples(st.just("dict"), st.fixed_dictionaries({"format": st.just(2), "config": ANYTHING,
                                                          "model": st.just({})})),
    ), check)


# -- the command line ---------------------------------------------------------------------

class ReachedWork(Exception):
    """Raised in place of loading data: every check of the arguments had passed."""


CLI_OPTIONS = {  # flag -> whether a value (as typed) is valid
    "--epochs": lambda v: is_int(v, 1),
    "--batch-size": lambda v: is_int(v, 1),
    "--lr": lambda v: is_number(v, high=math.inf),
    "--seed": lambda v: is_int(v, 0, 2**32 - 1),
    "--num-test": lambda v: is_int(v, 1),
    "--num-samples": lambda v: is_int(v, 1),
    "--latent-dim": lambda v: is_int(v, 1),
    "--flow-layers": lambda v: is_int(v, 1),
    "--pack": lambda v: is_int(v, 1),
    "--r1-weight": lambda v: is_number(v, -1e-300, math.inf),
    "--device": lambda v: v in ("auto", "cpu") or (v in ("cuda", "cuda:0") and torch.cuda.is_available()),
    "--ais-steps": lambda v: is_int(v, 1),
    "--obs-noise": lambda v: v == "auto" or is_number(v, high=math.inf),
}
INTEGER_FLAGS = {"--epochs", "--batch-size", "--seed", "--num-test", "--num-samples", "--latent-dim", "--flow-layers",
                 "--pack", "--ais-steps"}
COMMAND_FLAGS = {  # the options of each command that the property drives
    "fit": sorted(set(CLI_OPTIONS) - {"--ais-steps", "--obs-noise"}),
    "compare": sorted(set(CLI_OPTIONS) - {"--ais-steps", "--obs-noise"}),
    "evaluate": ["--num-samples", "--num-test", "--ais-steps", "--obs-noise"],
}


def typed(text: str):
    """What argparse makes of ``text`` for an int or float option (``None``: it refuses it)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@pytest.mark.parametrize("examples", EXAMPLES)
def test_the_cli_refuses_every_bad_option_in_one_line_before_any_work(tmp_path_factory, monkeypatch, capsys, examples):
    def refuse_work(*args, **kwargs):
        raise ReachedWork

    monkeypatch.setattr(pg.datasets, "load", refuse_work)  # fit and compare start by loading data,
    monkeypatch.setattr("probgen.cli._load_run", refuse_work)  # evaluate by loading the run
    out = tmp_path_factory.mktemp("cli") / "run"
    texts = st.one_of(st.integers(-5, 10).map(str), st.floats(allow_nan=True).map(repr),
                      st.sampled_from(["abc", "", "1e10", "1e39", "cuda:7", "mps", "meta", "cpu", "auto", "0x10"]))

    def check(drawn):
        command, flag, text = drawn
        where = ["--out", str(out), "--no-progress"] if command != "evaluate" else [str(out)]
        argv = [command, *(["vae"] if command == "fit" else []), flag, text, *where]
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's own refusal of a malformed value
            code = exit.code
            assert code == 2
            capsys.readouterr()
            return
        except ReachedWork:
            code = None
        err = capsys.readouterr().err
        value = text if flag == "--device" or (flag == "--obs-noise" and isinstance(typed(text), str)) else typed(text)
        if flag in INTEGER_FLAGS and not isinstance(value, int):
            raise AssertionError(f"{argv}: argparse took a non-integer {text!r}")
        valid = CLI_OPTIONS[flag](value)
        assert (code is None) == valid, f"{argv}: exit {code}, {err!r}"
        if code is not None:
            assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()

    commands = st.sampled_from(sorted(COMMAND_FLAGS)).flatmap(
        lambda command: st.tuples(st.just(command), st.sampled_from(COMMAND_FLAGS[command]), texts))
    run_property(examples, commands, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_cli_sample_draws_only_a_count_it_can_show(tmp_path_factory, capsys, examples):
    folder = tmp_path_factory.mktemp("sample")
    torch.manual_seed(0)
    pg.save_model(pg.Flow(pg.DataInfo((2,), "real"), "maf", num_layers=1, hidden=4), folder / "model.pt")

    def check(n):
        target = folder / f"samples_{abs(hash(n))}.png"
        target.unlink(missing_ok=True)
        try:
            code = main(["sample", str(folder / "model.pt"), "-n", str(n), "--out", str(target)])
        except SystemExit as exit:
            code = exit.code
        err = capsys.readouterr().err
        valid = 1 <= n <= MAX_FIGURE_SAMPLES
        assert (code == 0) == valid and code in (0, 2), (n, code, err)
        assert target.exists() == valid and "Traceback" not in err

    run_property(examples, st.one_of(st.integers(-3, 40), st.integers(MAX_FIGURE_SAMPLES - 1, MAX_FIGURE_SAMPLES + 1),
                                     st.integers(10**5, 10**9)), check)


def test_estimator_options_and_seeds_are_checked_by_probgen():
    flow = pg.Flow(pg.DataInfo((2,), "real"), "maf", num_layers=1, hidden=4)
    x = torch.randn(4, 2)
    for call in (
        lambda: pg.log_likelihood(flow, x, foo=1),
        lambda: pg.compare({"a": flow}, x, estimator_options={"exact": {"foo": 1}}),
        lambda: pg.compare({"a": flow}, x, estimator_options=[1]),
        lambda: pg.log_likelihood(flow, x, seed=-5),
        lambda: pg.compare({"a": flow}, x, seed="x"),
        lambda: pg.save_model(flow, Path(__file__).parent),
    ):
        _, error = outcome(call)
        assert error is not None
    assert "the 'exact' estimator has unknown options ['foo']; accepted: none" in str(
        outcome(lambda: pg.log_likelihood(flow, x, foo=1))[1])
