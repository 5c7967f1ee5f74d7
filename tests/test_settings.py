"""One definition per setting: the same name, type and help in every command and in Python."""
import dataclasses
import typing

import pytest

from initlab import cli, options
from initlab.commands import COMMANDS
from initlab.experiments import probe, study, transfer
from initlab.experiments.catalog import EXPERIMENTS, FLAT
from initlab.settings import SETTINGS, flag_name

CONFIGS = [study.StudyConfig, probe.ProbeConfig, transfer.TransferConfig] + [EXPERIMENTS[n].config for n in FLAT]


def _base_type(annotation):
    """Optional[T] -> T: None is a value some configs give a setting ("the model's own")."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def test_a_setting_has_one_type_in_every_config():
    types = {}
    for cls in CONFIGS:
        for flag in options.flags_of(cls):
            annotation = dict(options._leaf_fields(cls))[flag.dest]
            types.setdefault(flag.key, set()).add((_base_type(annotation), cls.__name__))
    for name, seen in types.items():
        assert len({t for t, _ in seen}) == 1, f"{name}: {sorted((str(t), c) for t, c in seen)}"
    assert types["bias_init"] and len(types) > 40


def _option_helps(name):
    parser = cli.build_parser()._subparsers._group_actions[0].choices[name]
    return {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_commands_setting_flags_carry_the_one_help(name):
    flags = {flag_name(k): k for k in SETTINGS}
    for option, help_ in _option_helps(name).items():
        if option in flags:
            assert help_.replace("%%", "%").startswith(SETTINGS[flags[option]].help), (name, option)


@pytest.mark.parametrize("name", FLAT)
def test_a_declared_experiments_flags_are_its_config_fields(name):
    exp = EXPERIMENTS[name]
    fields = {f.name for f in dataclasses.fields(exp.config)}
    flags = {f.dest for f in options.flags_of(exp.config)}
    assert flags == fields - {"workers"}                  # workers: the runner's own flag, in every command
    helps = _option_helps(name)
    for f in options.flags_of(exp.config):
        assert f.flag in helps, f.flag
    assert {"--resume", "--workers", "--backend", "--address", "--tensorboard", "--config"} <= set(helps)


def test_a_field_without_a_definition_is_no_flag_and_not_flags_are_kept_out():
    @dataclasses.dataclass
    class Inner:
        lr: float = 0.1
        heldout_size: int = 5                             # no definition: internal

    @dataclasses.dataclass
    class Config:
        NOT_FLAGS: typing.ClassVar[tuple] = ("inner.lr",)
        seeds: int = 1
        widths: typing.List[int] = dataclasses.field(default_factory=list)
        width: typing.Optional[int] = None
        bias_init: typing.Union[float, str] = 0.0
        inner: Inner = dataclasses.field(default_factory=Inner)

    flags = {f.dest: f for f in options.flags_of(Config)}
    assert list(flags) == ["seeds", "widths", "width", "bias_init"]
    assert (flags["seeds"].kind, flags["widths"].kind, flags["width"].kind, flags["bias_init"].kind) == \
        (int, "ints", int, str)
    assert flags["widths"].flag == "--widths" and flags["seeds"].help == SETTINGS["seeds"].help


def test_probe_and_depth_take_a_bias_distribution_as_the_study_does(tmp_path):
    for cls, check in ((probe.ProbeConfig, probe.validate), (study.StudyConfig, study.validate)):
        check(dataclasses.replace(cls(), bias_init="normal:std=0.1"))
        with pytest.raises(ValueError, match="--bias-init"):
            check(dataclasses.replace(cls(), bias_init="normal:sd=0.1"))
        with pytest.raises(ValueError, match="--bias-init must be a finite number or a distribution"):
            check(dataclasses.replace(cls(), bias_init=float("nan")))


def test_a_message_names_a_setting_as_its_user_wrote_it():
    assert options.flag("train_size", 70000) == "--train-size 70000"
    assert (options.flag("force", True), options.flag("source"), options.flag("out", "/tmp/x")) == \
        ("--force", "--from", "--out /tmp/x")
    with options.python_words():
        assert options.flag("train_size", 70000) == "train_size=70000"
        assert (options.flag("force", True), options.flag("source"), options.flag("out", "/tmp/x")) == \
            ("force=True", "source", "out='/tmp/x'")
    assert options.flag("lr") == "--lr"                       # the context ends with the block


def test_one_check_words_its_error_for_the_command_line_and_for_python(capsys):
    import initlab
    from initlab.options import UsageError

    assert cli.main(["study", "--lr", "0", "--quiet"]) == 2
    assert "--lr must be > 0, got 0.0" in capsys.readouterr().err
    with pytest.raises(UsageError) as e:
        initlab.study(lr=0)
    assert str(e.value) == "lr must be > 0, got 0.0"
    with pytest.raises(UsageError, match=r"^steps must be a multiple of 100"):
        initlab.width(steps=150)
