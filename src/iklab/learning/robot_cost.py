"""What a network costs robot code, and the budget a search holds it to.

A network's cost is its solver's time (:class:`~iklab.robot.solver.IKSolver`: the pose encoding,
the network in the runtime robot code runs (onnxruntime where installed, as `IKSolver.load`; else
the numpy export), refinement, the FK check) for one pose per call and for a batch of
10,000, each against roboticstoolbox's ``ik_LM`` (one pose per call, what a robot engineer would
call instead) on the same poses in the same process. Rounds are interleaved and the best of each
kept, and the figure is a ratio, so it carries from the machine that measured it to the robot's
better than microseconds do.

Before training, the same measurement of the untrained network without refinement (its pass,
the encoding, the FK check) is a lower bound of what the trained one costs: the architecture sets
it, the weights do not. A configuration over budget there is known before it costs any training.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from iklab.core.kinematics import Robot, fk, to_rtb
from iklab.core.regions import Region
from iklab.learning.config import ExperimentConfig, at_least, positive
from iklab.robot.model_metadata import ModelMetadata
from iklab.robot.network import NumpyNetwork
from iklab.robot.onnx_network import OnnxNetwork, onnxruntime_installed
from iklab.robot.solver import IKSolver

# ik_LM's tolerance (its error norm) and restarts: the settings bench/bench_solver.py compares with
IK_LM_TOLERANCE = 1e-12
ROUNDS = 5  # interleaved rounds; the best of each figure is kept (a busy machine's noise is one-sided)
# Before training a configuration is refused only when its lower bound is over the budget by this
# factor: the bound is timed in a second or two on a machine that may be busy (trials beside it,
# other jobs), and a configuration refused by noise is lost to the study, while one let through
# by it is measured again, trained, before it can be the champion.
BEFORE_TRAINING_MARGIN = 1.25
ONE_POSE_CALLS = 100  # one-pose calls per round (and ik_LM's poses), cycling through the poses
POSES_SEED = 7  # the measuring poses: the same for every trial of every study


@dataclass(frozen=True)
class RobotBudget:
    """What robot code can afford, against ``ik_LM`` in the same process (a search file's
    ``robot_budget:``; ``robot_budget: null`` measures and logs the cost without a budget)."""

    one_pose_vs_ik_lm: float = positive(default=1.0)  # a one-pose solve at most this many ik_LM times
    batch_vs_ik_lm: float = positive(default=20.0)  # a batch's throughput at least this many times ik_LM's
    batch_rows: int = at_least(1, default=10_000)  # poses per batch call

    def describe(self) -> str:
        return (
            f"one pose at most {self.one_pose_vs_ik_lm:g}x ik_LM's time, a {self.batch_rows:,}-pose batch "
            f"at least {self.batch_vs_ik_lm:g}x its throughput"
        )


@dataclass(frozen=True)
class RobotCost:
    """Per-pose times in microseconds, each the best of the rounds."""

    one_pose_us: float  # one pose per call (mean over the calls of a round)
    batch_us: float  # per pose, in calls of ``batch_rows`` poses
    ik_lm_us: float  # ik_LM per pose, one per call, on the same poses
    batch_rows: int
    refined: bool  # False: the untrained network's pass without refinement (before training)

    @property
    def one_pose_vs_ik_lm(self) -> float:
        """Time of a one-pose solve over ik_LM's (below 1: faster)."""
        return self.one_pose_us / self.ik_lm_us

    @property
    def batch_vs_ik_lm(self) -> float:
        """Batch throughput over ik_LM's (above 1: faster)."""
        return self.ik_lm_us / self.batch_us

    def over(self, budget: RobotBudget | None, margin: float = 1.0) -> str | None:
        """Why this cost is over ``budget`` (by more than ``margin`` times: see
        :data:`BEFORE_TRAINING_MARGIN`), in one line, or None."""
        if budget is None:
            return None
        reasons = []
        if self.one_pose_vs_ik_lm > budget.one_pose_vs_ik_lm * margin:
            reasons.append(
                f"one pose {self.one_pose_us:.0f} us is {self.one_pose_vs_ik_lm:.2f}x ik_LM's "
                f"{self.ik_lm_us:.0f} us (budget {budget.one_pose_vs_ik_lm:g}x)"
            )
        if self.batch_vs_ik_lm * margin < budget.batch_vs_ik_lm:
            reasons.append(
                f"a {self.batch_rows:,}-pose batch is {self.batch_vs_ik_lm:.1f}x ik_LM's throughput "
                f"(budget at least {budget.batch_vs_ik_lm:g}x)"
            )
        return "; ".join(reasons) or None

    def metrics(self, prefix: str = "robot/") -> dict[str, float]:
        """For MLflow: the times and both ratios."""
        return {
            f"{prefix}one_pose_us": self.one_pose_us,
            f"{prefix}batch_us_per_pose": self.batch_us,
            f"{prefix}ik_lm_us": self.ik_lm_us,
            f"{prefix}one_pose_vs_ik_lm": self.one_pose_vs_ik_lm,
            f"{prefix}batch_vs_ik_lm": self.batch_vs_ik_lm,
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> RobotCost:
        return cls(**{key: raw[key] for key in ("one_pose_us", "batch_us", "ik_lm_us", "batch_rows", "refined")})

    def summary(self) -> str:
        """e.g. `one pose 0.71x ik_LM (61 us), 10,000-pose batch 23.4x`."""
        return (
            f"one pose {self.one_pose_vs_ik_lm:.2f}x ik_LM ({self.one_pose_us:.0f} us), "
            f"{self.batch_rows:,}-pose batch {self.batch_vs_ik_lm:.1f}x"
        )


def measuring_poses(robot: Robot, region: Region, rows: int) -> np.ndarray:
    """``(rows, 4, 4)`` reachable poses, joints uniform in ``region`` (the same for every trial)."""
    rng = np.random.default_rng(POSES_SEED)
    return fk(robot, rng.uniform(region.lower, region.upper, size=(rows, 6)))


def measure_cost(
    solver: IKSolver, poses: np.ndarray, *, refine: bool = True, rounds: int = ROUNDS, calls: int = ONE_POSE_CALLS
) -> RobotCost:
    """Time ``solver`` on ``poses`` (one per call on the first ``calls``, then all of them in one
    call) and ``ik_LM`` on the first ``calls``, ``rounds`` times interleaved."""
    singles = poses[:calls]
    robot = solver.robot
    ets = to_rtb(robot).ets()
    starts = np.random.default_rng(POSES_SEED).uniform(robot.qlim[0], robot.qlim[1], size=(len(singles), 6))
    for _ in range(3):  # the paths timed, warm (their kernels compiled or read from numba's cache)
        solver.solve(singles[:1], refine=refine)
    solver.solve(poses, refine=refine)
    ik_lm, one, batch = math.inf, math.inf, math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        for pose, start in zip(singles, starts, strict=True):
            ets.ik_LM(pose, q0=start, tol=IK_LM_TOLERANCE, joint_limits=True)
        ik_lm = min(ik_lm, (time.perf_counter() - started) / len(singles))
        started = time.perf_counter()
        for pose in singles:
            solver.solve(pose[None], refine=refine)
        one = min(one, (time.perf_counter() - started) / len(singles))
        started = time.perf_counter()
        solver.solve(poses, refine=refine)
        batch = min(batch, (time.perf_counter() - started) / len(poses))
    return RobotCost(1e6 * one, 1e6 * batch, 1e6 * ik_lm, len(poses), refine)


def cost_before_training(config: ExperimentConfig, robot: Robot, region: Region, budget: RobotBudget) -> RobotCost:
    """The lower bound: ``config``'s network, untrained (seeded weights), without refinement."""
    import keras  # the training side only: robot code never reaches here

    from iklab.core.encodings import encode_pose_matrices
    from iklab.learning.models import build_model, n_outputs

    poses = measuring_poses(robot, region, budget.batch_rows)
    features = encode_pose_matrices(poses[:4096], config.data.input_encoding, robot).astype(np.float32)
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(POSES_SEED)
    angles = rng.uniform(region.lower, region.upper, size=(len(features), 6))  # adapts an "angles" output's scale
    model = build_model(
        config.model,
        features,
        n_outputs(config.data.output_encoding, config.model),
        train_targets=angles if config.data.output_encoding == "angles" else None,
    )
    metadata = ModelMetadata(robot, region, config.data.input_encoding, config.data.output_encoding)
    solver = robot_solver(model, metadata)  # a copy of its weights: the Keras model can go
    return measure_cost(solver, poses, refine=False)


def robot_solver(model: object, metadata: ModelMetadata) -> IKSolver:
    """The solver robot code will run for a Keras ``model``: its network as ONNX in onnxruntime
    where that is installed (as `IKSolver.load` runs a logged model: `iklab.robot.onnx_network`),
    else its numpy export."""
    network = NumpyNetwork.from_model(model)
    if not onnxruntime_installed():
        return IKSolver(network, metadata)
    from iklab.learning.onnx_export import save_onnx

    with tempfile.TemporaryDirectory(prefix="iklab-cost-") as folder:
        return IKSolver(OnnxNetwork(save_onnx(network, Path(folder) / "network.onnx"), network), metadata)


def cost_of_solver(solver: IKSolver, budget: RobotBudget) -> RobotCost:
    """A trained network's cost: its solver refined, on the measuring poses of its region."""
    return measure_cost(solver, measuring_poses(solver.robot, solver.region, budget.batch_rows))
