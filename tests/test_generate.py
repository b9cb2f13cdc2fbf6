import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from spatialmath.base import tr2rpy

from data_gen import generate as G
from data_gen.cli import main
from data_gen.dataset import DatasetError, column_stats, read_card, split_counts, verify
from data_gen.export import CSV_COLUMNS, export_csv
from iklab.core.kinematics import fk, matrix_to_quaternion, to_rtb
from iklab.core.regions import region_preset


def _load(directory) -> pd.DataFrame:
    card = read_card(directory)
    return pd.concat([pd.read_parquet(Path(directory) / f["name"]) for f in card["files"]], ignore_index=True)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, jaco):
    out = tmp_path_factory.mktemp("ds") / "jaco-small"
    G.generate(jaco, region_preset(jaco, "working"), 20_000, 7, out, part_rows=6_000)
    return out


def test_rows_identical_whatever_the_part_size(tmp_path, jaco):
    region = region_preset(jaco, "working")
    frames = []
    for part_rows in (10_007, 1_000, 333):
        out = tmp_path / f"p{part_rows}"
        G.generate(jaco, region, 10_007, 3, out, part_rows=part_rows)
        assert len(read_card(out)["files"]) == math.ceil(10_007 / part_rows)
        frames.append(_load(out))
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other)
    G.generate(jaco, region, 10_007, 4, tmp_path / "seed4")
    assert not np.allclose(_load(tmp_path / "seed4")["q0"], frames[0]["q0"])


def test_rows_are_exact_fk_inside_the_region(small_dataset, jaco):
    frame = _load(small_dataset)
    region = region_preset(jaco, "working")
    q = frame[[f"q{i}" for i in range(6)]].to_numpy()
    assert np.all(q >= region.lower) and np.all(q <= region.upper)
    assert all(frame[c].dtype == np.float64 for c in frame.columns if c != "split")
    rows = np.random.default_rng(0).choice(len(q), 200, replace=False)
    reference = np.array(to_rtb(jaco).fkine(q[rows]).A)
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy()[rows], reference[:, :3, 3], atol=1e-12)
    quat = frame[["qw", "qx", "qy", "qz"]].to_numpy()
    assert np.all(quat[:, 0] >= 0)
    np.testing.assert_allclose(quat[rows], matrix_to_quaternion(reference[:, :3, :3]), atol=1e-12)


def test_split_proportions_and_counts(tmp_path, jaco):
    out = tmp_path / "splits"
    G.generate(
        jaco, region_preset(jaco, "full"), 100_000, 0, out, part_rows=30_000, fractions=G.SplitFractions(0.7, 0.2, 0.1)
    )
    counts = split_counts(out)
    assert abs(counts["train"] - 70_000) <= 5
    assert abs(counts["val"] - 20_000) <= 5
    assert abs(counts["test"] - 10_000) <= 5
    assert read_card(out)["splits"]["counts"] == counts
    # the label of a row depends on its index only: same labels for another seed
    G.generate(jaco, region_preset(jaco, "full"), 1_000, 1, tmp_path / "s1", fractions=G.SplitFractions(0.7, 0.2, 0.1))
    assert list(_load(tmp_path / "s1")["split"]) == list(_load(out)["split"][:1_000])
    with pytest.raises(ValueError, match="sum to 1"):
        G.SplitFractions(0.8, 0.3, 0.1)


def test_card_contents(small_dataset, jaco):
    card = verify(small_dataset)
    assert card["robot"]["name"] == "jaco" and card["robot"]["d"] == jaco.d.tolist()
    assert card["region"]["name"] == "working" and len(card["region"]["lower"]) == 6
    assert card["n"] == 20_000 and card["seed"] == 7
    assert [f["rows"] for f in card["files"]] == [6_000, 6_000, 6_000, 2_000]
    assert all(len(f["sha256"]) == 64 for f in card["files"])
    assert card["columns"]["x"] == "m" and card["columns"]["q0"] == "rad"
    assert card["generator"]["version"]
    assert sum(card["splits"]["counts"].values()) == 20_000
    stats = column_stats(small_dataset)
    frame = _load(small_dataset)
    assert stats["z"]["max"] == frame["z"].max()
    assert stats["q3"]["mean"] == pytest.approx(frame["q3"].mean(), abs=1e-12)


def test_tampering_is_detected_and_named(tmp_path, jaco, capsys):
    out = tmp_path / "tampered"
    G.generate(jaco, region_preset(jaco, "working"), 3_000, 0, out, part_rows=1_000)
    part = out / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="part-00001.parquet: sha256 mismatch"):
        verify(out)
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert "part-00001.parquet: sha256 mismatch" in err and len(err.strip().splitlines()) == 1


def test_existing_output_is_refused_unless_overwrite(tmp_path, jaco):
    region = region_preset(jaco, "working")
    out = tmp_path / "ds"
    G.generate(jaco, region, 100, 0, out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        G.generate(jaco, region, 100, 1, out)
    G.generate(jaco, region, 50, 1, out, overwrite=True)
    assert read_card(out)["n"] == 50 and read_card(out)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporaries left


def test_interrupted_generation_leaves_no_dataset(tmp_path, jaco, monkeypatch):
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = G.fk_table
    monkeypatch.setattr(G, "fk_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        G.generate(jaco, region_preset(jaco, "working"), 5_000, 0, tmp_path / "ds", part_rows=1_000)
    assert list(tmp_path.iterdir()) == []


def _start_big_generation(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "data_gen", "generate", "--n", "50000000", "--part-rows", "200000", "--out", str(out)]
    # SIGINT back to its default: a shell that starts the tests in the background ignores it,
    # and an ignored SIGINT is inherited (Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.tmp-*/part-00001.parquet")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "generation did not start writing"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_killed_generation_cleans_up(tmp_path, sig):
    out = tmp_path / "big"
    proc = _start_big_generation(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted, nothing was written" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigkill_leaves_only_a_hidden_temporary_that_the_next_run_removes(tmp_path, jaco):
    out = tmp_path / "big"
    proc = _start_big_generation(out)
    proc.kill()
    proc.wait(timeout=30)
    leftovers = list(tmp_path.iterdir())
    assert not out.exists() and all(p.name.startswith(".big.tmp-") for p in leftovers)
    assert not any((p / "card.json").exists() for p in leftovers)
    G.generate(jaco, region_preset(jaco, "working"), 10, 0, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


@pytest.mark.parametrize("header", [False, True])
def test_csv_export_round_trip_to_the_question_layout(small_dataset, tmp_path, jaco, header):
    out = tmp_path / "jaco.csv"
    assert export_csv(small_dataset, out, header=header) == 20_000
    # read the way the original question did: pd.read_csv(path, names=[...])
    csv = pd.read_csv(out, names=CSV_COLUMNS, header=0 if header else None)
    frame = _load(small_dataset)
    q = csv[[f"state{i}" for i in range(6)]].to_numpy()
    np.testing.assert_array_equal(q, frame[[f"q{i}" for i in range(6)]].to_numpy())
    poses = fk(jaco, q[:500])
    np.testing.assert_allclose(csv[["pose0", "pose1", "pose2"]].to_numpy()[:500], poses[:, :3, 3], atol=1e-12)
    rpy = np.array([tr2rpy(p) for p in poses[:, :3, :3]])
    np.testing.assert_allclose(csv[["pose3", "pose4", "pose5"]].to_numpy()[:500], rpy, atol=1e-12)
    assert out.read_text().startswith("state0,") == header
    with pytest.raises(FileExistsError):
        export_csv(small_dataset, out)


def _run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--robot", "nao", "--n", "5"], "known robots: irb140, jaco"),
        (["generate", "--robot", "panda", "--n", "5"], "6-DOF all-revolute"),
        (["generate", "--n", "0"], "--n must be at least 1"),
        (["generate", "--n", "-3"], "--n must be at least 1"),
        (["generate", "--region", "moon", "--n", "5"], "unknown region 'moon'"),
        (["generate", "--n", "5", "--lower", "0,0,0,0,0,1", "--upper", "1,1,1,1,1,1"], "joint 5: lower bound"),
        (["generate", "--n", "5", "--lower", "0,0,0,0,0,0", "--upper", "1,1,1,1,1,9"], "outside jaco's limits"),
        (["generate", "--n", "5", "--lower", "0,0,0", "--upper", "1,1,1"], "need 6 finite numbers"),
        (["generate", "--n", "5", "--lower", "0,0,0,0,0,0"], "both --lower and --upper"),
        (["generate", "--n", "five"], "invalid int value"),
        (["generate", "--n", "5", "--split", "0.5,0.5"], "three fractions"),
        (["generate", "--n", "5", "--split", "0.9,0.2,0.1"], "sum to 1"),
        (["ambiguity", "--region", "moon"], "unknown region"),
        (["ambiguity", "--poses", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    if args[0] == "generate":
        args = args + ["--out", str(tmp_path / "never")]
    code, err = _run_cli(args, capsys)
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "never").exists()


def test_existing_output_and_unreadable_datasets_on_the_cli(small_dataset, tmp_path, capsys):
    code, err = _run_cli(["generate", "--n", "5", "--out", str(small_dataset)], capsys)
    assert code == 2 and "already exists; pass --overwrite" in err
    code, err = _run_cli(["inspect", str(tmp_path / "missing")], capsys)
    assert code == 2 and "no such dataset directory" in err
    (tmp_path / "empty").mkdir()
    code, err = _run_cli(["inspect", str(tmp_path / "empty")], capsys)
    assert code == 2 and "not a dataset (no card.json)" in err
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "card.json").write_text("{not json")
    code, err = _run_cli(["inspect", str(tmp_path / "garbled")], capsys)
    assert code == 2 and "unreadable card" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "card.json").write_text(json.dumps({"format": "something-else"}))
    code, err = _run_cli(["inspect", str(tmp_path / "other")], capsys)
    assert code == 2 and "not an iklab dataset card" in err


def test_inspect_prints_card_counts_and_stats(small_dataset, capsys):
    assert main(["inspect", str(small_dataset)]) == 0
    out = capsys.readouterr().out
    assert '"robot"' in out and "all sha256 verified" in out
    counts = read_card(small_dataset)["splits"]["counts"]
    assert f"train {counts['train']}, val {counts['val']}, test {counts['test']} (total 20000)" in out
    assert all(column in out for column in ("q0", "qw", "z"))


def test_cli_generate_writes_a_verified_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--n", "1234", "--seed", "5", "--out", str(out), "--region", "full"]) == 0
    assert "wrote 1234 rows" in capsys.readouterr().out
    card = verify(out)
    assert card["region"]["name"] == "full" and card["region"]["upper"] == [math.pi] * 6
