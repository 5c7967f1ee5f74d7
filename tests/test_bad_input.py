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
    # numbers past what is possible: seeds that SQLite and torch cannot hold, more runs than memory, a batch
    # larger than the data, histograms at no moment
    (["--seeds", "1000000000000"], "--seeds 1000000000000: more runs than one command may plan "
                                   "(1,000,000,000,000 seeds x 5 inits = 5,000,000,000,000 runs; at most 1,000,000)"),
    (["--first-seed", "100000000000000000000000"],
     "--first-seed 100000000000000000000000: a seed must be at most 2**63 - 1 = 9223372036854775807"),
    (["--first-seed", "-1"], "--first-seed must be >= 0, got -1"),
    (["--seeds", "5", "--first-seed", "9223372036854775806"],
     "--seeds 5 from --first-seed 9223372036854775806: the last seed 9223372036854775810 is past 2**63 - 1"),
    (["--batch-size", "100000", "--train-size", "2000"],
     "--batch-size 100000 is more than the 2,000 training images of --train-size 2000: at most 2,000"),
    (["--batch-size", "60001"], "--batch-size 60001 is more than the 60,000 training images of mnist"),
    (["--hist-moments", "0"], "--hist-moments must be >= 2 (the first and the last step), got 0"),
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
    # every command that takes seeds bounds them and its runs; sizes past the data
    (["bonus", "--seeds", "1000000000000"], "--seeds 1000000000000: more runs than one command may plan"),
    (["bonus", "--ablation", "200000"], "--ablation 200000: more runs than one command may plan (200,000 seeds "
                                        "x 8 ablation rows + 10 runs of the recipe = 1,600,010 runs"),
    (["bonus", "--first-seed", "100000000000000000000000"], "a seed must be at most 2**63 - 1"),
    (["bonus", "--batch-size", "100000"], "--batch-size 100000 is more than the 60,000 training images"),
    (["grid", "--seeds", "100000"], "--seeds 100000: more runs than one command may plan (100,000 seeds x 7 inits "
                                    "x 5 activations = 3,500,000 runs; at most 1,000,000)"),
    (["grid", "--first-seed", "-1"], "--first-seed must be >= 0, got -1"),
    (["grid", "--hist-moments", "0"], "--hist-moments must be >= 2"),
    (["depth", "--seeds", "30000"], "--seeds 30000: more runs than one command may plan"),
    (["depth", "--first-seed", "100000000000000000000000"], "a seed must be at most 2**63 - 1"),
    (["depth", "--batch-size", "20001"], "--batch-size 20001 is more than the 20,000 training images of "
                                         "--train-size 20000"),
    (["probe", "--images", "100000"], "--images 100000 is more than the 60,000 training images of mnist"),
    (["probe", "--images", "59900"], "--images 59900 leaves fewer than the 256 other images lsuv initializes "
                                     "from (of the 60,000 training images of mnist): at most 59,744"),
    (["probe", "--seeds", "1000000000000"], "--seeds 1000000000000: more runs than one command may plan"),
    (["probe", "--first-seed", "100000000000000000000000"], "a seed must be at most 2**63 - 1"),
    (["transfer", "--seeds", "1000000"], "--seeds 1000000: more runs than one command may plan"),
    (["transfer", "--first-seed", "-5"], "--first-seed must be >= 0, got -5"),
    (["transfer", "--batch-size", "200"], "--batch-size 200 is more than the 100 training images of "
                                          "--target-sizes 100: at most 100"),
    (["transfer", "--target-sizes", "70000"], "--target-sizes 70000 exceeds the 60,000 training images of mnist"),
    (["sweep", "GRID", "--seeds", "1000000000000"], "--seeds 1000000000000: more runs than one command may plan"),
    (["sweep", "GRID", "--first-seed", "100000000000000000000000"], "a seed must be at most 2**63 - 1"),
    (["sweep", "GRID", "--batch-size", "97"], "--batch-size 97 is more than the 96 training images of "
                                              "--train-size 96"),
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


def test_a_grid_file_of_more_runs_than_possible_is_refused_unexpanded(tmp_path, capsys):
    lists = "\n".join(f"{k} = [{', '.join(map(str, range(1, 1002)))}]" for k in ("epochs", "record_every"))
    (tmp_path / "big.toml").write_text(f'inits = ["kaiming", "xavier"]\nseeds = 1\ntrain_size = 96\n{lists}\n')
    _assert_refused(*_run(["sweep", str(tmp_path / "big.toml")], tmp_path, capsys),
                    "big.toml: more runs than one command may plan (1,002,001 setting combinations; at most 1,000,000")
    (tmp_path / "wide.toml").write_text('inits = ["kaiming", "xavier"]\nseeds = 1000\ntrain_size = 96\n'
                                        f'epochs = [{", ".join(map(str, range(1, 502)))}]\n')
    _assert_refused(*_run(["sweep", str(tmp_path / "wide.toml")], tmp_path, capsys),
                    "--seeds 1000: more runs than one command may plan (1,000 seeds x 1,002 inits in 501 "
                    "setting combinations = 1,002,000 runs; at most 1,000,000)")


@pytest.mark.parametrize("name", ["bad name:x", "", "a,b", "a=b", "tab\tname", "two words", "1st", "x:y", None])
def test_an_init_name_no_spec_can_hold_is_refused_at_registration(name):
    import initlab
    from initlab import init

    for register in (initlab.register_init, init.register_init):
        with pytest.raises(ValueError, match="cannot register initializer") as e:
            register(name, formula="N(0, 1)")     # the call itself, before any function is decorated
        assert "\n" not in str(e.value)
    assert name not in init.init_names()


# ---- result tables read back: an impossible value is a corrupt file, one line, exit 1 ---------------

@pytest.mark.parametrize("experiment", ["bonus", "study", "grid"])
@pytest.mark.parametrize("command", ["report", "runs"])
def test_a_result_table_with_an_impossible_accuracy_is_one_line_and_exit_1(experiment, command, tmp_path,
                                                                         capsys):
    from initlab import files

    out = tmp_path / "edited"
    row = {"run": 0, "init": "kaiming", "seed": 0, "activation": "relu", "test_acc": 1.7, "test_loss": 0.1,
           "steps": 3, "train_seconds": 0.2, "diverged": False}
    files.write_result(out, experiment, {"inits": ["kaiming"], "seeds": 1, "activations": ["relu"]},
                       {"runs": [row]})
    assert cli.main([command, str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"initlab: error: {out}/runs.csv: test_acc 1.7 outside [0, 1] (a corrupt or edited file)\n"


@pytest.mark.parametrize("column,value,ok", [
    ("test_acc", 1.0, True), ("test_acc", 0, True), ("test_acc", None, True), ("heldout_acc", float("nan"), True),
    ("test_acc", 1.7, False), ("heldout_acc", -0.1, False), ("acc_mean", 2.0, False), ("acc_at_0", "high", False),
    ("accuracy", 98.5, False), ("test_loss", 7.0, True), ("accumulated", 5.0, True)])
def test_check_table_refuses_an_accuracy_outside_0_1(column, value, ok, tmp_path):
    from initlab import files

    rows = [{"seed": 0, column: 0.5}, {"seed": 1, column: value}]
    if ok:
        assert files.check_table(tmp_path / "t.csv", rows) == rows
    else:
        with pytest.raises(files.CorruptTableError, match=f"t.csv: {column} {value} outside \\[0, 1\\]"):
            files.check_table(tmp_path / "t.csv", rows)


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
