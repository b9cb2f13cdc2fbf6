from pathlib import Path

import pytest

from iklab.learning.config import ConfigError, ExperimentConfig, flatten, load_experiment, to_yaml

EXPERIMENTS = sorted(Path(__file__).resolve().parent.parent.glob("experiments/*.yaml"))


def _write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_experiment_file_loads():
    assert {p.name for p in EXPERIMENTS} >= {"jaco_mlp.yaml", "jaco_full_range.yaml", "jaco_conv1d.yaml"}
    for path in EXPERIMENTS:
        if path.name.startswith("search_"):
            from iklab.studies.search_file import base_experiment, load_search

            search = load_search(path)  # checks the space, the base and the overrides
            assert search.space and isinstance(base_experiment(search, final=True), ExperimentConfig)
            continue
        if path.name.startswith("ablations_"):
            from iklab.studies.ablations import load_ablations

            ablations = load_ablations(path)  # checks every row's experiment
            assert all(isinstance(ablations.experiment(row), ExperimentConfig) for row in ablations.rows())
            continue
        config = load_experiment(path)
        assert isinstance(config, ExperimentConfig) and config.name == path.stem


def test_defaults_types_and_overrides(tmp_path):
    path = _write(tmp_path, "model:\n  width: 64\noptimizer:\n  learning_rate: 1e-3\n")
    config = load_experiment(path, "model.width=256 optimizer.learning_rate=3e-4 model.widths=[8,4]")
    assert config.name == "exp"  # from the file name
    assert config.model.width == 256 and config.model.widths == (8, 4)
    assert config.optimizer.learning_rate == pytest.approx(3e-4)  # YAML 1.1 reads "3e-4" as text
    assert config.model.depth == 3  # default kept
    assert load_experiment(path).optimizer.learning_rate == pytest.approx(1e-3)
    flat = flatten(config)
    assert flat["model.width"] == 256 and flat["data.robot"] == "jaco"
    assert "width: 256" in to_yaml(config)


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("model:\n  widht: 3\n", None, "exp.yaml: unknown key model.widht"),
        ("modle: {}\n", None, "unknown key modle"),
        ("model:\n  width: wide\n", None, "model.width must be int, got 'wide'"),
        ("model:\n  width: 2.5\n", None, "model.width must be int"),
        ("model:\n  residual: 1\n", None, "model.residual must be bool"),
        ("model:\n  widths: 5\n", None, "model.widths must be a list"),
        ("model: 3\n", None, "model must be a mapping"),
        ("{}", "model.width", "not KEY=VALUE"),
        ("{}", "model.depth=x", "model.depth must be int"),
        ("{}", "training.nope=1", "unknown key training.nope"),
        ("- a\n- b\n", None, "mapping at the top level"),
        ("model: [\n", None, "not valid YAML"),
    ],
)
def test_strict_errors_name_the_file_and_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_experiment(_write(tmp_path, text), overrides)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_mapping_overrides_keep_values_as_they_are(tmp_path):
    path = _write(tmp_path, "model:\n  width: 64\n")
    config = load_experiment(path, {"model.batch_norm": "off", "model.widths": [8, 4], "data.train_rows": None})
    assert config.model.batch_norm == "off"  # not YAML's False
    assert config.model.widths == (8, 4) and config.data.train_rows is None


@pytest.mark.parametrize(
    "override",
    [
        "model.activation=" + "x" * 100_000,  # a name that is none of the choices
        "model.width=" + "9" * 100_000,  # more digits than Python converts: not a YAML value here
        "training.epochs=[" + "1," * 50_000 + "1]",  # a list where a number goes
        "x" * 100_000,  # not KEY=VALUE
    ],
)
def test_an_error_never_echoes_a_huge_value_whole(tmp_path, override):
    path = tmp_path / "e.yaml"
    path.write_text("data: {rows: 1000}\n")
    try:
        load_experiment(path, [override])
    except ConfigError as exc:
        assert len(str(exc)) < 400 and "characters)" in str(exc)
    else:
        raise AssertionError(f"{override[:30]}... was accepted")
