"""Experiment configuration: frozen dataclasses loaded from YAML with strict keys.

An experiment file under `experiments/` is the whole definition of a run.
Unknown keys and wrong types are rejected with the key and the file named.
Overrides (``"model.width=256 optimizer.learning_rate=3e-4"``) are applied to
the YAML mapping before validation, so they get the same checks.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from iklab.core import urdf
from iklab.core.encodings import INPUT_ENCODINGS, OUTPUT_ENCODINGS
from iklab.core.kinematics import is_robot_file
from iklab.core.refine import shown

D = TypeVar("D")  # a config dataclass


class ConfigError(ValueError):
    """A configuration mistake; the message names the file and the key."""


# What a command reports in one line as the user's mistake when found late (a bad value in a
# file, a missing dataset path), not as a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ValueError, FileNotFoundError)


# Fields with a range: checked when a config is built from YAML (a None value is not checked).
def _rule(rule: str, check: typing.Callable[[float], bool], *, default: object) -> object:
    """A dataclass field whose value must pass ``check``; ``rule`` says how, in the error."""
    return field(default=default, metadata={"rule": rule, "check": check})


def at_least(low: float, *, default: object) -> object:
    return _rule(f">= {low:g}", lambda v: v >= low, default=default)


def positive(*, default: object) -> object:
    return _rule("> 0", lambda v: v > 0, default=default)


def one_of(*choices: str, default: str) -> object:
    """A name from ``choices``: checked with the rest of the file, before TensorFlow or a dataset."""
    return _rule(f"one of {', '.join(choices)}", lambda v: v in choices, default=default)


ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")


def fraction(*, default: object) -> object:
    """In [0, 1): a dropout rate, a momentum."""
    return _rule("in [0, 1)", lambda v: 0 <= v < 1, default=default)


@dataclass(frozen=True)
class DataConfig:
    robot: str = "jaco"  # a roboticstoolbox model name, or a path to a .urdf/.xacro file (from where you run)
    base_link: str | None = None  # URDF only: the chain's base link (default: the root link)
    ee_link: str | None = None  # URDF only: the end-effector link (default: the chain's one end)
    region: str = "working"  # a data_gen preset ("full", "working") or "custom"
    lower: tuple[float, ...] | None = None  # custom region bounds, radians
    upper: tuple[float, ...] | None = None
    rows: int = at_least(100, default=200_000)  # dataset size (10% each for val and test); generated if missing
    seed: int = at_least(0, default=0)  # dataset seed (the run's seed is ExperimentConfig.seed)
    path: str | None = None  # default data/<robot>-<region>-<rows>-s<seed>
    input_encoding: str = one_of(*INPUT_ENCODINGS, default="xyz_quat")  # xyz_rpy: the original question's
    # angles | sincos (two outputs per joint, decoded by atan2) | mixture
    output_encoding: str = one_of(*OUTPUT_ENCODINGS, default="sincos")
    train_rows: int | None = at_least(1, default=None)  # use only this many training rows (searches on a subsample)
    val_rows: int | None = at_least(1, default=None)  # validate on at most this many rows (streamed: 200k unless set)
    # Beyond memory: stream the training rows from the Parquet parts (iklab.learning.streaming) when the
    # in-memory estimate exceeds memory_budget_gb; stream: true / false forces either way.
    stream: bool | None = None
    memory_budget_gb: float = positive(default=4.0)
    shuffle_buffer: int = at_least(1, default=1_000_000)  # streamed: rows shuffled together

    @property
    def robot_name(self) -> str:
        """What datasets, MLflow experiments and the registry call the robot: the model's name, or the
        URDF file's ``<robot name>`` (a path would make ``ik-<robot>`` an invalid registry name)."""
        return urdf.robot_name(self.robot) if is_robot_file(self.robot) else self.robot.strip().lower()


@dataclass(frozen=True)
class ModelConfig:
    family: str = one_of("mlp", "conv1d", default="mlp")  # conv1d: the pose vector as a short sequence first
    depth: int = at_least(1, default=3)  # hidden dense layers
    width: int = at_least(1, default=256)
    widths: tuple[int, ...] | None = None  # per-layer widths; overrides depth and width
    activation: str = one_of(*ACTIVATIONS, default="relu")
    batch_norm: str = one_of("off", "before", "after", default="off")  # before or after the activation
    dropout: float = fraction(default=0.0)
    residual: bool = False  # skip connections between hidden layers of equal width
    kernel_initializer: str = "he_normal"
    conv_layers: int = at_least(1, default=2)  # conv1d only
    conv_filters: int = at_least(1, default=64)
    conv_kernel_size: int = at_least(1, default=3)
    # data.output_encoding mixture: von Mises components per pose (iklab.core.mixture); a 6R arm has
    # up to 8 IK solutions in its full joint range (16 for the general case)
    mixture_components: int = at_least(1, default=8)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = one_of("adam", "adamw", "sgd", "rmsprop", default="adam")
    learning_rate: float = positive(default=1e-3)
    momentum: float = fraction(default=0.0)  # sgd and rmsprop
    weight_decay: float = at_least(0, default=1e-4)  # adamw only
    schedule: str = one_of(
        "constant", "cosine", "warmup_cosine", "one_cycle", "exponential", "inverse_time", default="constant"
    )
    warmup_fraction: float = fraction(default=0.05)  # warmup_cosine: linear rise over this share of the steps
    decay: float = at_least(0, default=0.0)  # inverse_time: lr / (1 + decay * step), Keras 2's `decay` argument
    decay_rate: float = _rule("in (0, 1]", lambda v: 0 < v <= 1, default=0.9)  # exponential: lr * decay_rate ** epoch
    clipnorm: float | None = positive(default=None)  # gradient clipping by global norm


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = at_least(1, default=30)
    # Train for this long instead of `epochs`: the schedule (constant, cosine, warmup_cosine,
    # one_cycle) follows the share of the time spent, and training stops when it is up.
    time_budget_minutes: float | None = positive(default=None)
    # Keep the training state here after every epoch; a rerun of an interrupted run goes on
    # from its last epoch (weights, optimizer, schedule, time spent); one that ends clears it.
    resume_dir: str | None = None
    batch_size: int = at_least(1, default=512)
    # auto: wrapped for angles, mse for sincos, the mixture's likelihood (mixture_nll) for mixture
    loss: str = one_of("auto", "mse", "mae", "wrapped", "task", "mixed", "mixture_nll", default="auto")
    joint_weight: float = at_least(0, default=1.0)  # mixed: task-space loss + joint_weight * the auto joint loss
    task_length_m: float = positive(default=0.2)  # task and mixed: position error in units of this length
    # task and mixed: the joint loss alone for this share of the run first, which keeps the
    # network in the training data's IK branch (0: the task-space loss from the start)
    joint_first: float = fraction(default=0.3)
    early_stopping_patience: int = at_least(0, default=6)  # epochs without val_loss improvement; 0 disables
    reduce_lr_patience: int = at_least(0, default=3)  # constant schedule only; 0 disables
    reduce_lr_factor: float = _rule("in (0, 1)", lambda v: 0 < v < 1, default=0.5)
    verbose: int = 0  # Keras fit verbosity; progress is printed per epoch anyway


@dataclass(frozen=True)
class DiagnosticsConfig:
    probe_rows: int = at_least(1, default=4096)  # fixed validation rows probed at each epoch end
    warmup_epochs: int = at_least(0, default=2)  # flags about collapse wait this long


@dataclass(frozen=True)
class EvaluationConfig:
    knn_rows: int = at_least(1, default=200_000)  # training rows the k-NN baseline may look up
    knn_k: int = at_least(1, default=1)
    test_rows: int | None = at_least(1, default=None)  # evaluate on at most this many test rows
    # Solution sets (iklab.core.solution_sets): test poses whose every solution is sought, by the
    # model (solver.solve_all) and by multi-start numerical IK (the reference); default 200 for
    # a mixture model, 0 (off) otherwise
    solution_set_poses: int | None = at_least(0, default=None)
    reference_starts: int = at_least(1, default=256)  # random starts per pose of the reference


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str | None = None  # default ik-<robot>-train
    run_name: str | None = None
    log_model: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int = at_least(0, default=0)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


def load_experiment(path: str | Path, overrides: str | list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML, apply overrides, validate strictly."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    return experiment_from_dict(apply_overrides(raw, overrides, str(path)), str(path))


def experiment_from_dict(raw: dict, source: str = "<dict>") -> ExperimentConfig:
    return _build(ExperimentConfig, raw, source, prefix="")


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:  # one line: where, and what the parser expected
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def build_dataclass(cls: type[D], raw: dict, source: str) -> D:
    """Strictly build any config dataclass (nested dataclasses included) from a mapping."""
    return _build(cls, raw, source, prefix="")


def apply_overrides(raw: dict, overrides: str | list[str] | dict | None, source: str = "<dict>") -> dict:
    """A deep copy of ``raw`` with dotted keys set.

    ``overrides`` is ``"a.b=1 c.d=x"`` or ``["a.b=1"]`` (values parsed as YAML), or a
    ``{"a.b": value}`` mapping of values taken as they are.
    """
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        if isinstance(overrides, str):
            try:
                items = shlex.split(overrides)
            except ValueError as exc:  # an unclosed quote
                raise ConfigError(f"--overrides {shown(overrides)}: {exc} (quote a value as key='a b')") from None
        else:
            items = list(overrides or [])
        pairs = [_parse_override(item, source) for item in items]
    result = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for key, value in pairs:
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {shown(key)}: {shown(part)} is not a section")
        node[leaf] = value
    return result


def _parse_override(item: str, source: str) -> tuple[str, object]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{source}: override {shown(item)} is not KEY=VALUE (e.g. model.width=256)")
    try:
        return key, yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. an integer of more than 4,300 digits
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{source}: override {shown(item)} is not a YAML value ({shown(first, 120)})") from None


def _build(cls: type[D], raw: object, source: str, prefix: str) -> D:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    values = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names & set(raw):
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], source, f"{prefix}{name}.")
            continue
        values[name] = value = _coerce(raw[name], hint, source, prefix + name)
        rule = fields[name].metadata
        if rule and value is not None and not rule["check"](value):
            raise ConfigError(f"{source}: {prefix}{name} must be {rule['rule']}, got {shown(value)}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{source}: {prefix or ''}{exc}") from None


def _coerce(value: object, hint: object, source: str, key: str) -> object:
    """Check ``value`` against a type hint: int, float, str, bool, tuple[x, ...], X | None."""
    if dataclasses.is_dataclass(hint):  # e.g. the rows of a tuple[Row, ...]
        return _build(hint, value, source, f"{key}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, source, key)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {shown(value)}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {shown(value)}")
        return tuple(_coerce(v, args[0], source, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, str):
        value = _yaml_float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {shown(value)}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{source}: {key} must be a finite number, got {shown(value)}")
    return float(value) if hint is float else value


def _yaml_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def to_dict(config: object) -> dict:
    return dataclasses.asdict(config)


def to_yaml(config: object) -> str:
    def plain(value: object) -> object:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    return yaml.safe_dump(plain(to_dict(config)), sort_keys=False)


def flatten(config: object) -> dict[str, object]:
    """``{"model.width": 256, ...}``: one entry per leaf, for MLflow params."""
    flat = {}

    def walk(node: object, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(to_dict(config), "")
    return flat
