"""Bad input, across every command: one line on stderr, exit code 2, and nothing trained or written.

A table of cases (flags, init specs with bad parameters, config files with wrong types or unknown keys,
data folders that do not hold the data, output folders that cannot be used), and a property-based test
that draws flag values and init specs and asserts a valid config or one clean error, never a traceback.
"""
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from initlab import cli
from initlab.commands import common
from initlab.options import UsageError

BAD_INIT_SPECS = [
    ("normal:std=-1", "need std >= 0"), ("truncated_normal:std=0", "need std > 0"),
    ("normal:std=abc", "need std >= 0"), ("kaiming:a=nan", "need a >= 0"),
    ("kaiming:mode=sideways", "need mode one of fan_in, fan_out"), ("lsuv:tol=-1", "need tol > 0"),
    ("lsuv:max_iter=1.5", "need max_iter >= 0 (an integer)"), ("dbn:images=0", "need images >= 1"),
    ("xavier:gain=0", "need gain > 0"), ("xavier_uniform:gain=inf", "need gain > 0"),
    ("orthogonal:gain=-2", "need gain > 0"), ("constant:value=nan", "need value (a finite number)"),
    ("variance_scaling:mode=fan_avgg", "fan_in, fan_out, fan_avg"), ("uniform:low=x", "need low"),
    ("kaiming:gain=2", "unknown parameter 'gain'"), ("bogus", "unknown initializer 'bogus'"),
    ("kaiming:mode", "is not key=value"), ("kaiming:a=1,a=2", "given twice"),
]

STUDY_FLAG_CASES = [
    (["--lr", "0"], "--lr must be > 0"), (["--lr", "nan"], "--lr must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"), (["--epochs", "0"], "--epochs must be >= 1"),
    (["--seeds", "0"], "--seeds must be >= 1"), (["--train-size", "0"], "--train-size must be >= 1"),
    (["--train-size", "70000"], "more than the 60,000 training images"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"), (["--schedule", "cosine"], "unknown schedule"),
    (["--activation", "swish2"], "unknown activation 'swish2'"), (["--model", "resnet"], "unknown model"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'"), (["--pool", "min"], "unknown pool 'min'"),
    (["--device", "tpu"], "unknown device 'tpu'"), (["--bias-init", "nan"], "--bias-init must be a finite"),
    (["--bias-init", "xavier"], "need no fans"), (["--depth", "3"], "--depth does not apply: lenet5 has no depth"),
    (["--model", "mlp", "--pool", "max"], "--pool does not apply: mlp has no pool"),
    (["--model", "mlp:width=0"], "mlp: need width an integer >= 1, got 0"),
    (["--model", "mlp:height=3"], "unknown parameter 'height' for model 'mlp'; valid: width, depth, conv"),
    (["--model", "mlp:conv=maybe"], "need conv true or false"), (["--model", "mlp:width"], "is not key=value"),
    (["--model", "mlp:width=64", "--width", "32"], "width given twice: 64 in --model, 32 by --width"),
    (["--model", "three_layer_convnet:form=dense"], "unknown form 'dense'"),
    (["--model", "mlp", "--width", "0"], "--width must be >= 1"),
    (["--record-every", "0"], "--record-every must be >= 1"),
    (["--hist-moments", "1"], "--hist-moments must be >= 2"), (["--seeds", "two"], "invalid int value"),
    (["--c3-table", "maybe"], "expected true/false"), (["--workers", "-1"], "--workers must be >= 0"),
    (["--dataset", "cifar10"], "--model lenet5 takes 1x28x28 images"),
]

OTHER_CASES = [
    (["bonus", "--ablation", "-1"], "--ablation must be >= 0"),
    (["bonus", "--lr", "-1"], "--lr must be > 0"),
    (["grid", "--activation", "relu"], "grid takes --activations"),
    (["grid", "--activations", "swish2"], "unknown activation 'swish2'"),
    (["probe", "--depth", "0"], "--depth must be >= 1"), (["probe", "--activations", "gelu2"], "unknown activation"),
    (["probe", "--inits", "normal:std=-1"], "need std >= 0"), (["probe", "--images", "0"], "--images must be >= 1"),
    (["depth", "--depths", "0"], "--depths must be >= 1"), (["depth", "--lrs", "-0.1"], "--lrs must be > 0"),
    (["depth", "--inits", "kaiming:mode=x"], "need mode one of"), (["depth", "--optimizer", "rmsprop"],
                                                                 "unknown optimizer"),
    (["transfer", "--modes", "distill"], "unknown mode in distill"),
    (["transfer", "--target-sizes", "0"], "--target-sizes must be >= 1"),
    (["transfer", "--inits", "truncated_normal:std=0"], "need std > 0"),
    (["transfer", "--from", "imagenet"], "unknown source dataset"),
    (["sweep"], "give a grid file"), (["sweep", "missing.toml"], "config file not found"),
    (["sweep", "GRID", "--backend", "mpi"], "unknown backend 'mpi'"),
    (["sweep", "GRID", "--workers", "-1"], "--workers must be >= 0"),
    (["grid", "--backend", "mpi"], "unknown backend 'mpi'"),
    (["depth", "--threads", "0"], "--threads must be >= 1"),
    (["grid", "--address", "1.2.3.4:6379"], "--address is for --backend ray"),
    (["sweep", "GRID", "--address", "1.2.3.4:6379"], "--address is for --backend ray"),
    (["sweep", "GRID", "--backend", "ray", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["sweep", "GRID", "--backend", "ray", "--address", "nowhere"], "expected HOST:PORT"),
    (["report", "NOWHERE"], "is not a folder"), (["runs", "NOWHERE"], "is not a folder"),
    (["data", "fetch", "svhn"], "unknown dataset"), (["data", "fetch", "--data-dir", "/etc"], "has no train-images"),
    (["summary", "--model", "resnet"], "unknown model"),
    (["summary", "--model", "two_layer_fc:hidden=0"], "need hidden an integer >= 1"),
    (["depth", "--model", "mlp:depth=3"], "--depths sets the depth"),
    (["depth", "--model", "lenet5"], "depth trains the mlp"),
]

CONFIG_CASES = [
    ('lr = "fast"\n', "bad value for lr"), ("seeds = 1.5\n", "bad value for seeds"),
    ("learning_rate = 0.1\n", "unknown setting 'learning_rate'"), ("inits = [\n", "cannot read config"),
    ('inits = ["normal:std=-1"]\n', "need std >= 0"), ("train_size = 0\n", "--train-size must be >= 1"),
]


def _run(argv, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(tmp_path / "grid.toml") if a == "GRID" else str(tmp_path / "nowhere") if a == "NOWHERE"
            else a for a in argv]
    if argv[0] not in ("report", "runs", "data", "summary") and "--out" not in argv:
        argv += ["--out", str(out), "--quiet"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err, out


@pytest.fixture
def grid_file(tmp_path):
    (tmp_path / "grid.toml").write_text('inits = ["kaiming"]\nseeds = 1\ntrain_size = 96\n')


def _assert_refused(code, err, out, message):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("initlab: error: ") and message in err, err
    assert not (out / "runs.csv").exists() and not (out / "store.sqlite").exists()   # nothing trained


def test_the_table_has_at_least_60_cases():
    assert len(BAD_INIT_SPECS) * 2 + len(STUDY_FLAG_CASES) + len(OTHER_CASES) + len(CONFIG_CASES) >= 60


@pytest.mark.parametrize("spec,message", BAD_INIT_SPECS, ids=[s for s, _ in BAD_INIT_SPECS])
@pytest.mark.parametrize("command", ["study", "grid"])
def test_a_bad_init_spec_is_one_line_before_any_training(command, spec, message, tmp_path, capsys):
    _assert_refused(*_run([command, "--inits", spec], tmp_path, capsys), message)


@pytest.mark.parametrize("args,message", STUDY_FLAG_CASES, ids=[" ".join(a) for a, _ in STUDY_FLAG_CASES])
def test_a_bad_study_flag_is_one_line_before_any_training(args, message, tmp_path, capsys):
    _assert_refused(*_run(["study", *args], tmp_path, capsys), message)


@pytest.mark.parametrize("args,message", OTHER_CASES, ids=[" ".join(a) for a, _ in OTHER_CASES])
def test_bad_input_to_every_other_command(args, message, tmp_path, capsys, grid_file):
    _assert_refused(*_run(args, tmp_path, capsys), message)


@pytest.mark.parametrize("text,message", CONFIG_CASES, ids=[m for _, m in CONFIG_CASES])
@pytest.mark.parametrize("command", ["study", "bonus", "grid"])
def test_a_bad_config_file_is_one_line(command, text, message, tmp_path, capsys):
    (tmp_path / "c.toml").write_text(text)
    _assert_refused(*_run([command, "--config", str(tmp_path / "c.toml")], tmp_path, capsys), message)


@pytest.mark.parametrize("make", ["file", "used"])
def test_an_unusable_out_folder_is_refused(make, tmp_path, capsys):
    out = tmp_path / "out"
    if make == "file":
        out.write_text("not a folder")
        message = "exists and is not a folder"
    else:
        out.mkdir()
        (out / "runs.csv").write_text("init,seed\n")
        message = "already holds"
    code = cli.main(["study", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


# ---- property-based: whatever the flags, a valid config or one clean UsageError --------------------

_text = hs.text(alphabet=string.ascii_letters + string.digits + ".-_:=,", max_size=12)
_number = hs.one_of(hs.integers(-5, 100_000).map(str), hs.floats(allow_nan=True, allow_infinity=True).map(str),
                    _text)
_spec = hs.builds(lambda name, key, value: f"{name}:{key}={value}" if key else name,
                  hs.sampled_from(["zeros", "normal", "truncated_normal", "kaiming", "xavier", "lsuv", "dbn",
                                   "orthogonal", "constant", "zero_one", "uniform", "nope"]),
                  hs.sampled_from(["", "std", "a", "mode", "gain", "tol", "images", "value", "low", "x"]),
                  _number)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lr=_number, batch=_number, train_size=_number, bias=_number, spec=_spec)
def test_any_flags_give_a_config_or_one_clean_error(lr, batch, train_size, bias, spec):
    argv = ["study", "--lr", lr, "--batch-size", batch, "--train-size", train_size, "--bias-init", bias,
            "--inits", spec]
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as e:                 # argparse refused a value: its one-line error, exit 2
        assert e.code == 2
        return
    try:
        cfg = common.study_config(args)
    except UsageError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert cfg.train.lr > 0 and cfg.train.batch_size >= 1 and 1 <= cfg.train.train_size <= 60_000


@pytest.mark.parametrize("argv, pointer", [(["summary", "--width", "3"], "see 'initlab summary --help'"),
                                           (["study", "--bogus"], "see 'initlab study --help'"),
                                           (["--bogus"], "see 'initlab --help'")])
def test_an_unknown_flag_points_to_its_commands_help(argv, pointer, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments" in err and pointer in err, err


@pytest.mark.parametrize("command", ["study", "depth"])
def test_an_optional_size_takes_none_and_refuses_words(command, capsys):
    parsed = vars(cli.build_parser().parse_args([command, "--train-size", "none"]))
    assert parsed["train_size" if command == "depth" else "train.train_size"] is None
    assert cli.main([command, "--train-size", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid int value: 'abc' (or none)" in err, err
