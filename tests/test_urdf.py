"""A 6R arm from a URDF file (iklab.core.urdf): its DH form is exact, refusals are one line.

The reference is ssik's own URDF reader (``Manipulator.from_urdf(...).fk``, through urchin):
nothing of iklab's parsing or DH construction is shared with it. Arms: the ABB IRB140, KUKA
KR16, KR120 and KR210 and Puma560 files of roboticstoolbox's data package, and a UR5 written
out from its vendor's description (tests/fixtures/urdf/ur5.urdf).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from iklab.core import urdf
from iklab.core.kinematics import Robot, RobotError, fk, fk_and_jacobian, jacobian, load_robot, rotation_angle_between
from iklab.core.regions import preset_names, region_preset

RTBDATA = Path(__import__("rtbdata").__file__).parent / "xacro"
UR5 = Path(__file__).parent / "fixtures" / "urdf" / "ur5.urdf"
ARMS = {  # file, end-effector link (ssik's default end skips the fixed tool0 frame: name it)
    "irb140": (RTBDATA / "abb_irb140_description/urdf/irb140.urdf", "tool0"),
    "kr16": (RTBDATA / "kuka_description/kuka_kr16/urdf/kr16_2.urdf", "tool0"),
    "kr120": (RTBDATA / "kuka_description/kuka_kr120/urdf/kr120r2500pro.urdf", "tool0"),
    "kr210": (RTBDATA / "kuka_description/kuka_kr210/urdf/kr210l150.urdf", "tool0"),
    "puma560": (RTBDATA / "unimation_puma560_description/urdf/puma560_robot.urdf", "link7"),
    "ur5": (UR5, "tool0"),
}
IIWA = RTBDATA / "kuka_description/kuka_lbr_iiwa/urdf/lbr_iiwa_14_r820.urdf"


def _random_joints(robot: Robot, rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(robot.qlim[0], robot.qlim[1], size=(rows, 6))


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_fk_equals_ssik_of_the_same_file(arm):
    ssik = pytest.importorskip("ssik")
    path, ee = ARMS[arm]
    robot = load_robot(str(path), ee_link=ee)
    manipulator = ssik.Manipulator.from_urdf(path, ee=ee)
    q = _random_joints(robot, 200)
    reference = np.array([manipulator.fk(row) for row in q])
    for rotation, position in ((fk(robot, q)[:, :3, :3], fk(robot, q)[:, :3, 3]), fk_and_jacobian(robot, q)[:2]):
        assert np.max(np.linalg.norm(position - reference[:, :3, 3], axis=1)) <= 1e-12
        assert np.max(rotation_angle_between(rotation, reference[:, :3, :3])) <= 1e-12
    assert robot.source["dh_error_m"] <= 1e-13 and robot.source["dh_error_rad"] <= 1e-13


def test_the_chain_is_read_as_the_file_says():
    robot = load_robot(str(UR5), ee_link="tool0")
    assert robot.name == "ur5" and robot.n_joints == 6 and np.all(robot.sign == 1)
    source = robot.source
    assert (source["kind"], source["file"], source["base_link"], source["ee_link"]) == (
        "urdf",
        "ur5.urdf",
        "world",
        "tool0",
    )
    assert source["joints"] == [
        "shoulder_pan_joint",
        "shoulder_lift_joint",
        "elbow_joint",
        "wrist_1_joint",
        "wrist_2_joint",
        "wrist_3_joint",
    ]
    assert len(source["sha256"]) == 64
    np.testing.assert_array_equal(robot.qlim[:, 2], [-3.14159265359, 3.14159265359])  # the file's limits
    # UR5's published DH lengths come out of the joint origins
    np.testing.assert_allclose(robot.d, [0.089159, 0, 0, 0.10915, 0.09465, 0.0823], atol=1e-15)
    np.testing.assert_allclose(np.abs(robot.a), [0, 0.425, 0.39225, 0, 0, 0], atol=1e-15)
    # a base link chosen lower in the chain: same arm, base frame at base_link
    lower = load_robot(str(UR5), base_link="base_link", ee_link="tool0")
    assert lower.source["base_link"] == "base_link"
    np.testing.assert_allclose(fk(lower, _random_joints(lower, 5)), fk(robot, _random_joints(robot, 5)), atol=1e-15)


def test_continuous_joints_get_one_turn(tmp_path):
    text = UR5.read_text().replace('type="revolute"', 'type="continuous"', 1)
    (tmp_path / "arm.urdf").write_text(text)
    robot = load_robot(str(tmp_path / "arm.urdf"), ee_link="tool0")
    np.testing.assert_array_equal(robot.qlim[:, 0], [-math.pi, math.pi])
    np.testing.assert_array_equal(robot.qlim[:, 1], load_robot(str(UR5), ee_link="tool0").qlim[:, 1])


def test_a_xacro_file_is_expanded(tmp_path):
    """roboticstoolbox's Puma560 xacro (another Puma description than its .urdf): read directly,
    against ssik on the URDF that xacro makes of it."""
    ssik = pytest.importorskip("ssik")
    xacrodoc = pytest.importorskip("xacrodoc")
    source = RTBDATA / "unimation_puma560_description/urdf/puma560_robot.urdf.xacro"
    robot = load_robot(str(source))
    expanded = tmp_path / "puma560.urdf"
    expanded.write_text(xacrodoc.XacroDoc.from_file(source, resolve_packages=False).to_urdf_string())
    q = _random_joints(robot, 200)
    manipulator = ssik.Manipulator.from_urdf(expanded, ee="link7")
    reference = np.array([manipulator.fk(row) for row in q])
    poses = fk(robot, q)
    assert robot.name == "Puma560" and robot.source["file"] == source.name
    assert np.max(np.linalg.norm(poses[:, :3, 3] - reference[:, :3, 3], axis=1)) <= 1e-12
    assert np.max(rotation_angle_between(poses[:, :3, :3], reference[:, :3, :3])) <= 1e-12


def test_jacobian_and_refinement_work_on_the_chain():
    from iklab.core.refine import refine

    path, ee = ARMS["kr210"]  # no axis meets the next one at a point: every DH parameter in use
    robot, chain = load_robot(str(path), ee_link=ee), urdf.read_chain(path, ee=ee)
    q = _random_joints(robot, 20, seed=3)
    step = 1e-6
    numeric = np.empty((20, 6, 6))
    for j in range(6):
        shift = np.zeros(6)
        shift[j] = step
        ahead, behind = urdf.chain_fk(chain, q + shift), urdf.chain_fk(chain, q - shift)
        numeric[:, :3, j] = (ahead[:, :3, 3] - behind[:, :3, 3]) / (2 * step)
        turn = ahead[:, :3, :3] @ behind[:, :3, :3].transpose(0, 2, 1)  # about exp([w] 2 step)
        numeric[:, 3:, j] = np.stack(
            [turn[:, 2, 1] - turn[:, 1, 2], turn[:, 0, 2] - turn[:, 2, 0], turn[:, 1, 0] - turn[:, 0, 1]], axis=1
        ) / (4 * step)
    np.testing.assert_allclose(jacobian(robot, q), numeric, atol=1e-8)
    targets = urdf.chain_fk(chain, q)
    result = refine(robot, q + 0.05, targets, tolerance_m=1e-10, tolerance_rad=1e-10)
    assert result.success.all()
    reached = urdf.chain_fk(chain, result.q)
    assert np.max(np.linalg.norm(reached[:, :3, 3] - targets[:, :3, 3], axis=1)) < 1e-9


def test_round_trip_through_a_card():
    robot = load_robot(str(UR5), ee_link="tool0")
    again = Robot.from_dict(json.loads(json.dumps(robot.to_dict())))
    assert again.name == robot.name and again.source == robot.source
    for key in ("d", "a", "alpha", "offset", "sign", "qlim", "base", "tool"):
        np.testing.assert_array_equal(getattr(again, key), getattr(robot, key))
    q = _random_joints(robot, 100)
    np.testing.assert_array_equal(fk(again, q), fk(robot, q))


def test_regions_for_a_urdf_arm(tmp_path):
    robot = load_robot(str(UR5), ee_link="tool0")
    full = region_preset(robot)
    assert full.name == "full"
    np.testing.assert_array_equal(full.lower, robot.qlim[0])
    with pytest.raises(ValueError, match=r"^unknown region 'working' for robot 'ur5'; presets: full \(") as info:
        region_preset(robot, "working")
    assert len(str(info.value).splitlines()) == 1
    # a file that calls itself jaco is not roboticstoolbox's Jaco: no hand-found working box
    (tmp_path / "jaco.urdf").write_text(UR5.read_text().replace('<robot name="ur5">', '<robot name="jaco">'))
    assert preset_names(load_robot(str(tmp_path / "jaco.urdf"), ee_link="tool0")) == ["full"]


def _edited(tmp_path: Path, old: str, new: str, name: str = "arm.urdf") -> str:
    text = UR5.read_text()
    assert old in text
    (tmp_path / name).write_text(text.replace(old, new))
    return str(tmp_path / name)


SIDE_ARM = """  <link name="camera"/>
  <joint name="camera_pan" type="revolute">
    <parent link="forearm_link"/><child link="camera"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
</robot>"""


@pytest.mark.parametrize(
    "case, words",
    [
        (
            "prismatic",
            "joint 'wrist_3_joint' is prismatic; iklab needs six revolute joints between 'world' and 'tool0'",
        ),
        ("floating", "joint 'wrist_3_joint' is floating; iklab needs six revolute joints"),
        (
            "seven",
            "7 revolute joints between 'base_link' and 'tool0' (joint_a1, joint_a2, joint_a3, joint_a4, joint_a5, "
            "joint_a6, joint_a7); iklab needs 6 (choose other base and end-effector links)",
        ),
        ("branch", "the chain from 'world' branches and ends in ee_link, tool0; choose the end-effector link"),
        ("no ee link", "no link 'flange' (the end-effector link); links: base, base_link, ee_link, forearm_link"),
        ("ee above base", "end-effector link 'upper_arm_link' is not below base link 'wrist_1_link'"),
        ("undeclared link", "joint 'elbow_joint' names link 'forearm', which the file does not declare"),
        ("bad origin", "joint 'elbow_joint': origin xyz='0.0 -0.1197' is not 3 numbers"),
        ("malformed", "not valid XML (mismatched tag: line"),
        ("missing file", "no such URDF file"),
        ("xacro include", "xacro could not expand it (<class 'xacrodoc.packages.PackageNotFoundError'>: Package "),
        ("not a robot name", "known robots: irb140, jaco, kr5, mico, puma560, ur10, ur3, ur5, or a path to a .urdf"),
        ("links on a model", "robot 'ur5' is a roboticstoolbox model: base and end-effector links are for URDF files"),
    ],
)
def test_refusals_are_one_line_naming_the_joint_or_link(case, words, tmp_path):
    ee, base = "tool0", None
    if case == "prismatic":
        path = _edited(
            tmp_path, '<joint name="wrist_3_joint" type="revolute">', '<joint name="wrist_3_joint" type="prismatic">'
        )
    elif case == "floating":
        path = _edited(
            tmp_path, '<joint name="wrist_3_joint" type="revolute">', '<joint name="wrist_3_joint" type="floating">'
        )
    elif case == "seven":
        path = str(IIWA)
    elif case == "branch":
        path, ee = _edited(tmp_path, "</robot>", SIDE_ARM), None
    elif case == "no ee link":
        path, ee = str(UR5), "flange"
    elif case == "ee above base":
        path, base, ee = str(UR5), "wrist_1_link", "upper_arm_link"
    elif case == "undeclared link":
        path = _edited(tmp_path, '<child link="forearm_link"/>', '<child link="forearm"/>')
    elif case == "bad origin":
        path = _edited(tmp_path, 'xyz="0.0 -0.1197 0.425"', 'xyz="0.0 -0.1197"')
    elif case == "malformed":
        path = _edited(tmp_path, "</joint>", "</link>")
    elif case == "missing file":
        path = str(tmp_path / "nowhere.urdf")
    elif case == "xacro include":
        path, ee = str(RTBDATA / "kuka_description/kuka_kr16/urdf/kr16_2.xacro"), None
    elif case == "not a robot name":
        path, ee = "nao", None
    else:
        path = "ur5"
    with pytest.raises(RobotError) as info:
        load_robot(path, base, ee)
    message = str(info.value)
    assert words in message and len(message.splitlines()) == 1, message
    if case == "branch":  # a side branch is no trouble once the end is named
        assert load_robot(path, ee_link="tool0").source["ee_link"] == "tool0"


def test_data_gen_writes_the_chain_into_the_card(tmp_path, capsys):
    from data_gen.cli import main
    from data_gen.dataset import read_card, verify
    from iklab.learning.config import DataConfig
    from iklab.learning.datasets import dataset_path, ensure_dataset, load_dataset

    out = tmp_path / "ur5-full"
    assert (
        main(["generate", "--robot", str(UR5), "--ee", "tool0", "--region", "full", "--n", "2000", "--out", str(out)])
        == 0
    )
    assert "wrote 2000 rows (ur5, region full)" in capsys.readouterr().out
    card = verify(out)
    robot = Robot.from_dict(card["robot"])  # no file needed any more
    assert card["robot"]["source"]["joints"][0] == "shoulder_pan_joint" and str(UR5) not in json.dumps(read_card(out))
    data = load_dataset(out)
    chain = urdf.read_chain(UR5, ee="tool0")
    for split in (data.train, data.test):
        reference = urdf.chain_fk(chain, split.q)
        np.testing.assert_allclose(split.poses(), reference, atol=1e-12)
        np.testing.assert_allclose(fk(robot, split.q), reference, atol=1e-12)
    # an experiment's data section takes the same file; the dataset is named after <robot name>
    config = DataConfig(robot=str(UR5), ee_link="tool0", region="full", rows=2000, seed=0)
    assert config.robot_name == "ur5" and dataset_path(config) == Path("data/ur5-full-2000-s0")
    assert ensure_dataset(DataConfig(**{**config.__dict__, "path": str(out)})) == out
    other_end = DataConfig(**{**config.__dict__, "path": str(out), "ee_link": "ee_link"})
    with pytest.raises(ValueError, match="holds a different dataset"):
        ensure_dataset(other_end)
    code = main(["generate", "--robot", str(IIWA), "--n", "5", "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "7 revolute joints between 'base_link' and 'tool0'" in err
