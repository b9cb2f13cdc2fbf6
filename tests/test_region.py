"""`python -m data_gen region`: a single-branch working box for any arm, found automatically.

Small sample counts throughout (the command's defaults are 10-100x larger); the found box
is judged again on a fresh sample here, not only by the search's own measurement.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_gen.ambiguity import measure_ambiguity
from data_gen.cli import build_parser, main
from data_gen.region import det_joints, find_region, peel, split_families, start_box, volume_share
from iklab.core.kinematics import load_robot

UR5 = Path(__file__).parent / "fixtures" / "urdf" / "ur5.urdf"
IRB140 = Path(__file__).parents[1] / "robots" / "abb_irb140.urdf"  # roboticstoolbox's data file, copied
# Small but enough: on the IRB140 these find a box in ~5-10 s
QUICK = {"samples": 30_000, "poses": 120, "starts": 16, "verify_poses": 300, "verify_starts": 24}


@pytest.fixture(scope="module")
def ur5():
    return load_robot(str(UR5), ee_link="tool0")


@pytest.fixture(scope="module")
def irb140():
    return load_robot(str(IRB140), ee_link="tool0")


@pytest.fixture(scope="module")
def found(irb140):
    return find_region(irb140, volume_samples=40_000, **QUICK)


def test_start_box_is_one_turn_inside_the_limits(ur5):
    lower, upper = start_box(ur5)  # UR5: +-360 degrees on five joints, +-180 on the elbow: a turn each
    np.testing.assert_allclose([lower, upper], [[-175] * 6, [175] * 6])
    assert det_joints(ur5) == [1, 2, 3, 4]  # never the first and last joint


def test_split_and_peel_find_the_side_of_a_singular_band():
    rng = np.random.default_rng(0)
    q = rng.uniform(-180, 180, size=(20_000, 6))
    sign = np.where(q[:, 2] > 10, 1.0, -1.0)  # a "singularity" at q2 = 10 degrees
    leaves = split_families(q, sign, [-180] * 6, [180] * 6, joints=[1, 2, 3, 4])
    assert len(leaves) == 2 and sorted(lo[2] for lo, _ in leaves) == [-180, 10]
    disagree = (q[:, 2] > 150) | (q[:, 3] < -170)  # bands at two edges
    lower, upper = peel(q, disagree, [-180] * 6, [180] * 6, target=0.0005)
    assert upper[2] == 150 and lower[3] == -170
    assert np.all(lower[[0, 1, 4, 5]] == -180) and np.all(upper[[0, 1, 4, 5]] == 180)


def test_found_box_is_single_branch_and_inside_the_limits(irb140, ur5, found):
    region = found.region
    assert np.all(region.lower >= irb140.qlim[0]) and np.all(region.upper <= irb140.qlim[1])
    assert np.all(region.upper - region.lower <= 2 * np.pi)
    assert found.ambiguity.ambiguous_fraction <= 0.01
    # judged again on poses the search never saw, with more starts
    fresh = measure_ambiguity(irb140, region, n_poses=300, n_starts=32, seed=11)
    assert fresh.ambiguous_fraction <= 0.02  # 1% target, 300 poses: +-0.6 points
    assert fresh.mean_distinct_solutions < 1.03
    assert 0.6 < found.volume_share <= 1.0  # one branch of the IRB140 still reaches most of its workspace
    assert found.det_disagreement < 0.01
    # the whole joint range against itself (two samples): 1 less the voxels at the edge one sample
    # misses (0.95 for the UR5 at 200k, the command's default); a thin box reaches much less
    lower, upper = np.degrees(ur5.qlim)
    assert volume_share(ur5, lower, upper) == pytest.approx(1.0, abs=0.07)
    assert volume_share(ur5, lower / 10, upper / 10) < 0.2


def test_the_command_prints_what_an_experiment_and_data_gen_take(tmp_path, capsys, found):
    from iklab.learning.config import experiment_from_dict
    from iklab.learning.datasets import config_region

    out = tmp_path / "region.yaml"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items() if k != "verify_starts"]
    args = ["region", "--robot", str(IRB140), "--ee", "tool0", *flags, "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert out.read_text() == printed.out and "verifying" in printed.err  # progress on stderr
    data = yaml.safe_load(printed.out)["data"]
    config = experiment_from_dict({"name": "pasted", "data": data}, "region.yaml")
    region = config_region(config.data, load_robot(str(IRB140), ee_link="tool0"))
    np.testing.assert_allclose(region.lower, found.region.lower, atol=1e-12)  # same seed, same box
    np.testing.assert_allclose(region.upper, found.region.upper, atol=1e-12)
    # the comment line is data_gen's arguments, as they are
    line = next(x for x in printed.out.splitlines() if x.startswith("# data_gen: "))
    gen = build_parser().parse_args(["ambiguity", *shlex.split(line.removeprefix("# data_gen: "))])
    np.testing.assert_allclose([gen.lower, gen.upper], [region.lower, region.upper], atol=1e-12)
    # an existing --out is refused before any work
    assert main(args) == 2 and "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "robot, words",
    [
        ("nosuch", "unknown robot 'nosuch'"),
        ("{prismatic}", "is prismatic; iklab needs six revolute joints"),
    ],
)
def test_bad_input_is_one_line(robot, words, tmp_path, capsys):
    prismatic = tmp_path / "arm.urdf"
    text = UR5.read_text().replace('<joint name="wrist_3_joint" type="revolute">', '<joint name="x" type="prismatic">')
    prismatic.write_text(text.replace('"wrist_3_joint"', '"x"'))
    args = ["region", "--robot", robot.format(prismatic=prismatic), "--ee", "tool0"][: 3 if robot == "nosuch" else 5]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert main(["region", "--robot", str(UR5), "--max-ambiguity", "150"]) == 2
    assert "--max-ambiguity" in capsys.readouterr().err
