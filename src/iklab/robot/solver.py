"""Robot-side API: load a logged IK model, solve batches of poses, refine to exact IK.

    from iklab.robot.solver import IKSolver
    solver = IKSolver.load("models:/ik-jaco@champion")   # or models:/ik-jaco/3, runs:/..., a path
    result = solver.solve(poses, refine=True)            # (N, 4, 4), (4, 4) or spatialmath SE3
    result.q, result.position_error_m, result.rotation_error_rad, result.success
    solutions = solver.solve_all(poses)                  # one IKResult per pose: its distinct exact solutions

A mixture model (output encoding ``mixture``) gives several answers per pose, one per
component: ``solve`` refines the most probable (the next ones where it fails), ``solve(q_seed=)``
keeps the exact solution nearest the seed among all of them, ``solve_all`` returns every
distinct one. A single-answer model is the case K = 1.

Everything needed comes from the metadata logged with the model (robot DH
table, region, encodings): no dataset or experiment file. Errors are always
FK-verified.

Robot side: imports numpy, numba and iklab's core (kinematics, regions, encodings, refine,
network) at module level, and MLflow when a model is loaded. Never TensorFlow: the network runs
as its numpy export (`iklab.robot.network`, logged beside the Keras model), so `pip install iklab`
(the `robot` set, no TensorFlow) is enough to load and solve. Only a model logged before the
export existed needs TensorFlow to load.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iklab.core.encodings import decode_candidates, decode_outputs, encode_pose_matrices
from iklab.core.kinematics import jacobian, wrap_angle
from iklab.core.refine import (
    EXACT_TOLERANCE,
    JointLimits,
    RefineResult,
    check_options,
    into_limits,
    refine_checked,
    row_list,
    shown,
    validate_poses,
    verify_checked,
)
from iklab.core.refine_kernel import PARALLEL_ROWS
from iklab.core.solution_sets import DISTINCT_RAD, EXACT_DISTINCT_RAD, distinct_mask
from iklab.robot.model_metadata import (
    MODEL_METADATA_KEY,
    NETWORK_ARTIFACT,
    NUMPY_NETWORK_ARTIFACT,
    NUMPY_NETWORK_FILE,
    ONNX_NETWORK_FILE,
    ModelMetadata,
)
from iklab.robot.network import NumpyNetwork, warm_kernels
from iklab.robot.onnx_network import OnnxNetwork, onnxruntime_installed

# solve_all's refinement steps: a component in a solution's basin converges in ~10; one that is
# not rarely does later (Puma560 mixture, 300 poses: coverage 91.4% at 50 steps, 91.3% at 20)
SOLVE_ALL_ITERATIONS = 25
# solve_all's search for a pose's missing branch (_complete_pairs): seeds this far (radians) both
# ways along the least singular direction of the PAIR_ROWS found solutions nearest a singularity,
# refined for at most PAIR_ITERATIONS steps. Jaco, 1,000 poses, one thread (docs/ssik.md):
# coverage 96.20% without it; these steps from 2 rows 97.44% (+16 ms per 1,000 poses), from 1
# row 97.16% (+13), from every row 97.94% (+35)
PAIR_STEPS_RAD = np.array([0.1, 0.3, 0.6, 1.0, 1.5])
PAIR_ROWS = 2
PAIR_ITERATIONS = 25
# solve_all refines the components the network gives at least this probability (the heaviest
# always): on Jaco's 16-component mixture a third of the components weigh under 1e-3, and on
# 1,000 full-range poses they found 0.002 solutions per pose that no heavier one found.
MIN_COMPONENT_WEIGHT = 1e-3


def _scattered(refined: RefineResult, rows: np.ndarray, start: np.ndarray) -> RefineResult:
    """``refined`` (the rows ``rows`` of ``start`` ``(M, 6)``) at their places among all of
    ``start``'s rows; a row not refined keeps its start and is not a success."""
    never = np.full(len(start), np.inf)
    unrefined = RefineResult(start, never, never, np.zeros(len(start), np.bool_), np.zeros(len(start), np.int64))
    return _merge_rows(unrefined, rows, refined)


def duplicate_radius(position_error_m: np.ndarray, rotation_error_rad: np.ndarray, distinct_rad: float) -> np.ndarray:
    """solve_all's duplicate radius per row: ``distinct_rad`` for a row finished to
    EXACT_TOLERANCE, at least 1 deg (DISTINCT_RAD) for one the finish could not take there."""
    exact = (position_error_m <= EXACT_TOLERANCE) & (rotation_error_rad <= EXACT_TOLERANCE)
    return np.where(exact, distinct_rad, max(distinct_rad, DISTINCT_RAD))


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray  # (N, 6) radians
    position_error_m: np.ndarray  # (N,) FK-verified
    rotation_error_rad: np.ndarray  # (N,) FK-verified
    success: np.ndarray  # (N,) bool, within tolerance
    within_region: np.ndarray  # (N,) bool, q inside the region the model was trained on
    iterations: np.ndarray  # (N,) refinement iterations (0 without refinement)


@dataclass(frozen=True)
class PathResult(IKResult):
    """:meth:`IKSolver.solve_path`'s answer: one row per pose of the path, plus each step's jump."""

    # (N,) largest joint change from the step's seed (the last successful answer, or the start), radians
    joint_step: np.ndarray

    @property
    def worst_joint_step(self) -> float:
        """The largest per-step joint jump along the path, radians."""
        return float(self.joint_step.max(initial=0.0))


class IKSolver:
    """A trained IK network plus the robot it was trained for."""

    def __init__(self, model: object, metadata: ModelMetadata | dict) -> None:
        """``model``: a Keras network taking raw pose features, or its :class:`NumpyNetwork`
        export (or an :class:`OnnxNetwork`); ``metadata``: what it was trained on. A Keras model
        is exported here, and the export is what runs (same answers to float32 rounding, without
        Keras' per-call cost)."""
        if not isinstance(metadata, ModelMetadata):
            metadata = ModelMetadata.from_dict(metadata)
        self.metadata = metadata
        self.robot, self.region = metadata.robot, metadata.region
        self.input_encoding, self.output_encoding = metadata.input_encoding, metadata.output_encoding
        self.network = model if isinstance(model, NumpyNetwork | OnnxNetwork) else NumpyNetwork.from_model(model)
        self._limits = JointLimits.of(self.robot.qlim[0], self.robot.qlim[1])
        # every joint turns fully: every IK root is inside the limits (solve_all's pair rule)
        self._full_turn = bool(np.all(self.robot.qlim[1] - self.robot.qlim[0] >= 2 * math.pi - 1e-9))

    @classmethod
    def load(cls, uri: str, *, robot: str | None = None, runtime: str = "auto") -> IKSolver:
        """Load from an MLflow URI or a local model directory; ``robot`` checks the model's robot.
        ``runtime``: "auto" runs the network's ONNX file with onnxruntime where both are there
        (`iklab.robot.onnx_network`), else its numpy export; "numpy": the numpy export."""
        if runtime not in ("auto", "numpy"):
            raise ValueError(f"runtime must be 'auto' or 'numpy', got {shown(runtime)}")
        local, spec = _model_files(uri)
        raw = (spec.get("metadata") or {}).get(MODEL_METADATA_KEY)
        if raw is None:
            raise ValueError(f"{uri!r} has no iklab metadata: it was not logged by iklab.train")
        metadata = ModelMetadata.from_dict(raw)
        if robot is not None and metadata.robot.name != robot:
            raise ValueError(f"{uri!r} was trained for robot {metadata.robot.name!r}, not {robot!r}")
        if "tensorflow" in (spec.get("flavors") or {}):  # the bare Keras network (before the pyfunc wrapper)
            return cls(_load_keras(str(local)), metadata)
        # the pyfunc wrapper: its numpy export, read directly (no pyfunc, pandas or TensorFlow)
        exported = local / "artifacts" / NUMPY_NETWORK_FILE
        onnx_file = local / "artifacts" / ONNX_NETWORK_FILE
        pyfunc_artifacts = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
        if onnx_file.is_file() and runtime != "numpy" and onnxruntime_installed():
            small = NumpyNetwork.load(exported) if exported.is_file() else None  # one pose: the quicker
            solver = cls(OnnxNetwork(onnx_file, small), metadata)  # batches: the faster runtime, where installed
        elif exported.is_file():
            solver = cls(NumpyNetwork.load(exported), metadata)
        elif NUMPY_NETWORK_ARTIFACT in pyfunc_artifacts:  # logged with it: the directory lost it
            raise ValueError(
                f"{uri!r}: artifacts/{NUMPY_NETWORK_FILE} is missing from the model directory {local}: "
                "it is incomplete (copy it whole, or load it from MLflow)"
            )
        elif (local / "artifacts" / NETWORK_ARTIFACT).is_dir():  # logged before the export existed
            solver = cls(_load_keras(str(local / "artifacts" / NETWORK_ARTIFACT)), metadata)
        else:
            raise ValueError(f"{uri!r} is neither an iklab network nor iklab's pyfunc wrapper of one")
        solver.warm_up()
        return solver

    def warm_up(self) -> None:
        """Take every path a call can take once, now: each numba kernel compiled (seconds once
        per machine, then read from numba's cache), serial and parallel, and the network run on
        one row and on many, so the first pose a control loop sends costs what the hundredth does."""
        warm_kernels()  # the network's parallel activation, which only very large batches reach
        self.network(np.zeros((4096, self.network.n_inputs), dtype=np.float32))  # BLAS's threads start
        pose = np.eye(4)[None]
        batch = np.repeat(pose, PARALLEL_ROWS, axis=0)  # the parallel refinement and FK check
        for _ in range(3):  # one-pose calls: the robot's usual call, its buffers and caches warm
            self.solve(pose)
        self.solve(pose, q_seed=np.zeros(6))
        self.solve(batch)
        self.solve_all(pose)
        self.solve_all(batch)
        self.solve_path(np.repeat(pose, 2, axis=0), np.zeros(6))

    def solve(
        self,
        poses: object,
        *,
        q_seed: object = None,
        max_joint_step: float | None = None,
        refine: bool = True,
        max_iterations: int = 50,
        tolerance_m: float = 1e-5,
        tolerance_rad: float = math.radians(0.01),
    ) -> IKResult:
        """Joint angles reaching ``poses``, inside the robot's joint limits (an angle is moved
        there by 2*pi; a row where none fits is not a success); errors FK-verified at the
        returned joints; ``success`` within both tolerances.

        ``q_seed`` ``(N, 6)`` or ``(6,)`` radians (e.g. the robot's current joints): refine from
        the seed, and where that does not land within 0.15 rad of it from the network's answer
        too; return the exact solution nearer the seed (largest joint difference, wrapped).
        ``max_joint_step`` (radians, needs a seed): a row whose answer is farther than this from
        its seed is not a success (a continuity break is reported, never hidden).
        """
        poses = validate_poses(as_pose_batch(poses))
        seed = _seed_batch(q_seed, len(poses))
        if max_joint_step is not None:
            number = isinstance(max_joint_step, int | float | np.integer | np.floating)
            if not number or isinstance(max_joint_step, bool) or not 0 < max_joint_step < math.inf:
                raise ValueError(f"max_joint_step must be a number > 0 (radians), got {shown(max_joint_step)}")
            if seed is None:
                raise ValueError("max_joint_step needs q_seed: without a seed there is no step to bound")
        check_options(max_iterations, tolerance_m, tolerance_rad)
        # checked above: from here on the compiled paths, without per-call checks (small batches)
        target_r, target_p = np.ascontiguousarray(poses[:, :3, :3]), np.ascontiguousarray(poses[:, :3, 3])
        tolerances = (tolerance_m, tolerance_rad)
        if not refine:
            starts = [self.predict(poses)] if seed is None else [*self._answers(poses), seed]
            candidates = [
                verify_checked(self.robot, np.ascontiguousarray(q), target_r, target_p, self._limits, *tolerances)
                for q in starts
            ]
            out = candidates[0] if seed is None else _nearest_exact(candidates, seed)
        elif seed is None:
            out = self._refine_most_probable(poses, target_r, target_p, max_iterations, tolerances)
        else:
            out = self._refine_seeded(poses, seed, target_r, target_p, max_iterations, tolerances)
        success = out.success
        if max_joint_step is not None:
            success = success & (joint_distance(out.q, seed) <= max_joint_step)
        return IKResult(
            out.q,
            out.position_error_m,
            out.rotation_error_rad,
            success,
            self.region.contains(out.q),
            out.iterations,
        )

    def _refine_seeded(
        self,
        poses: np.ndarray,
        seed: np.ndarray,
        target_r: np.ndarray,
        target_p: np.ndarray,
        max_iterations: int,
        tolerances: tuple[float, float],
    ) -> RefineResult:
        """Refine from the seed; where that settles on an exact solution within
        ``SEED_SETTLED_RAD`` of the seed, that is the nearest one. Elsewhere also refine from
        the network's answer and keep the nearer exact one.

        Why the shortcut is sound: two exact solutions both within 0.15 rad (every joint) of one
        seed would be within 0.3 rad of each other. A 6R arm's wrist flip moves two joints by pi,
        and its shoulder and elbow branches lie farther apart than that except next to the
        singularity where they meet, where "nearest" has no stable answer anyway and the seed's
        own branch is the continuous choice. 0.15 rad leaves room for seeds a few degrees off
        (3 deg noise per joint: 0.1 rad sent 28% of the rows through the network, 0.15 about 3%;
        bench_solver's seeded rows within 1 deg of their solution: 99.95% at 0.1, 99.91% at
        0.15, 99.89% at 0.25, the misses next to singular configurations).
        It is what makes a control loop's seeded call cheap: no network pass."""
        options = (self._limits, max_iterations, *tolerances)
        from_seed = refine_checked(self.robot, seed, target_r, target_p, *options)
        settled = from_seed.success & (joint_distance(from_seed.q, seed) <= SEED_SETTLED_RAD)
        if settled.all():
            return from_seed
        rows = np.flatnonzero(~settled)
        from_network = [
            refine_checked(self.robot, q, target_r[rows], target_p[rows], *options) for q in self._answers(poses[rows])
        ]
        nearest = _nearest_exact([*from_network, _rows_of(from_seed, rows)], seed[rows])
        return _merge_rows(from_seed, rows, nearest)

    def _refine_most_probable(
        self,
        poses: np.ndarray,
        target_r: np.ndarray,
        target_p: np.ndarray,
        max_iterations: int,
        tolerances: tuple[float, float],
    ) -> RefineResult:
        """Refine the most probable answer; where it does not converge, the next answers in
        order of weight (a mixture's), keeping the first that does."""
        options = (self._limits, max_iterations, *tolerances)
        answers = self._answers(poses)
        out = refine_checked(self.robot, answers[0], target_r, target_p, *options)
        for q in answers[1:]:
            rows = np.flatnonzero(~out.success)
            if not rows.size:
                break
            retry = refine_checked(self.robot, q[rows], target_r[rows], target_p[rows], *options)
            better = np.flatnonzero(retry.success)
            out = _merge_rows(out, rows[better], _rows_of(retry, better))
        return out

    def solve_all(
        self,
        poses: object,
        *,
        max_iterations: int = SOLVE_ALL_ITERATIONS,
        tolerance_m: float = 1e-5,
        tolerance_rad: float = math.radians(0.01),
        distinct_rad: float = EXACT_DISTINCT_RAD,
        complete_pairs: bool = True,
        min_weight: float = MIN_COMPONENT_WEIGHT,
    ) -> list[IKResult]:
        """Every distinct exact solution the network leads to, per pose: each of its answers (a
        mixture's components) refined, the exact ones kept (FK-verified, inside the joint limits)
        and finished to 1e-10 m and rad where they get there within ``max_iterations``, duplicates
        within ``distinct_rad`` (every joint, modulo 2*pi) dropped. A row that the finish could
        not take to 1e-10 (a root at a singularity) is one solution with any row within
        ``max(distinct_rad, 1 deg)``. One :class:`IKResult` per pose, its rows the solutions,
        most probable first; none when no answer converged. A mixture's components of weight
        below ``min_weight`` are not refined (the heaviest always is; 0 refines every one).

        ``complete_pairs`` (an arm whose joints all turn fully, as Jaco's): a pose with an odd
        number of solutions is missing one, sought from seeds next to those found
        (:meth:`_complete_pairs`); its solutions follow the network's."""
        poses = validate_poses(as_pose_batch(poses))
        check_options(max_iterations, tolerance_m, tolerance_rad)
        if not (isinstance(distinct_rad, (int, float, np.floating, np.integer)) and 0 < distinct_rad < math.inf):
            raise ValueError(f"distinct_rad must be a finite number > 0 (radians), got {distinct_rad!r}")
        if not (isinstance(min_weight, (int, float, np.floating, np.integer)) and 0 <= min_weight < 1):
            raise ValueError(f"min_weight must be a number in [0, 1), got {min_weight!r}")
        if not len(poses):
            return []
        weights, answers = self._candidates(poses)  # (N, K), (N, K, 6): heaviest first
        n, k = answers.shape[:2]
        chosen = (weights >= min_weight).reshape(-1)
        chosen[::k] = True  # each pose's heaviest
        rows = np.flatnonzero(chosen)
        owners = rows // k  # each refined row's pose
        refined = refine_checked(
            self.robot,
            np.ascontiguousarray(answers.reshape(n * k, 6)[rows]),
            np.ascontiguousarray(poses[owners, :3, :3]),
            np.ascontiguousarray(poses[owners, :3, 3]),
            self._limits,
            max_iterations,
            tolerance_m,
            tolerance_rad,
            exact_tolerance=EXACT_TOLERANCE,
        )
        out = _scattered(refined, rows, answers.reshape(n * k, 6))
        radius = duplicate_radius(out.position_error_m, out.rotation_error_rad, distinct_rad).reshape(n, k)
        keep = distinct_mask(out.q.reshape(n, k, 6), out.success.reshape(n, k), radius).reshape(-1)
        rows = np.flatnonzero(keep)  # pose-major: each pose's solutions together, most probable first
        inside = self.region.contains(out.q[rows])
        bounds = np.cumsum(keep.reshape(n, k).sum(axis=1))[:-1]
        fields = (out.q[rows], out.position_error_m[rows], out.rotation_error_rad[rows], out.success[rows], inside)
        split = [np.split(values, bounds) for values in (*fields, out.iterations[rows])]
        results = [IKResult(*pose_fields) for pose_fields in zip(*split, strict=True)]
        if complete_pairs and self._full_turn:
            self._complete_pairs(poses, results, max_iterations, tolerance_m, tolerance_rad, distinct_rad)
        return results

    def _complete_pairs(
        self,
        poses: np.ndarray,
        results: list[IKResult],
        max_iterations: int,
        tolerance_m: float,
        tolerance_rad: float,
        distinct_rad: float,
    ) -> None:
        """Seek the missing branch of each pose with an odd number of solutions, in place.

        A 6R arm's IK solutions are the real roots of a polynomial of even degree (16 in general,
        8 with a spherical wrist) with real coefficients: away from a singular pose they come in
        even numbers. Where every joint turns fully each root is inside the limits, so an odd
        count means one is missing; it is usually the partner a found solution was born with at
        a singularity nearby, along the Jacobian's least singular direction from the found
        solutions nearest one (PAIR_STEPS_RAD; 32 random starts per odd pose instead found fewer
        for more time: docs/ssik.md)."""
        odd = np.array([i for i, result in enumerate(results) if len(result.q) % 2 == 1], dtype=np.int64)
        if not len(odd):
            return
        found = np.concatenate([results[i].q for i in odd])
        owners = np.repeat(odd, [len(results[i].q) for i in odd])
        _, sigma, vt = np.linalg.svd(jacobian(self.robot, found))
        # each pose's rows nearest a singularity (least smallest singular value): the likely twins
        order = np.lexsort((sigma[:, -1], owners))
        rank = np.arange(len(order)) - np.searchsorted(owners[order], owners[order])
        chosen = np.sort(order[rank < PAIR_ROWS])
        found, owners, null = found[chosen], owners[chosen], vt[chosen, -1, :]  # the least singular direction
        steps = np.concatenate([PAIR_STEPS_RAD, -PAIR_STEPS_RAD])
        seeds = (found[:, None, :] + steps[None, :, None] * null[:, None, :]).reshape(-1, 6)
        owners = np.repeat(owners, len(steps))
        target_r = np.ascontiguousarray(poses[owners, :3, :3])
        target_p = np.ascontiguousarray(poses[owners, :3, 3])
        out = refine_checked(
            self.robot,
            seeds,
            target_r,
            target_p,
            self._limits,
            min(max_iterations, PAIR_ITERATIONS),
            tolerance_m,
            tolerance_rad,
            exact_tolerance=EXACT_TOLERANCE,
        )
        starts = np.searchsorted(owners, odd)
        ends = np.searchsorted(owners, odd, side="right")
        for i, start, end in zip(odd, starts, ends, strict=True):
            new = start + np.flatnonzero(out.success[start:end])
            if not len(new):
                continue
            old = results[i]
            q = np.concatenate([old.q, out.q[new]])
            position = np.concatenate([old.position_error_m, out.position_error_m[new]])
            rotation = np.concatenate([old.rotation_error_rad, out.rotation_error_rad[new]])
            radius = duplicate_radius(position, rotation, distinct_rad)
            keep = distinct_mask(q[None], np.ones((1, len(q)), dtype=np.bool_), radius[None])[0]
            if keep.sum() == len(old.q):
                continue
            results[i] = IKResult(
                q[keep],
                position[keep],
                rotation[keep],
                np.ones(int(keep.sum()), dtype=np.bool_),
                self.region.contains(q[keep]),
                np.concatenate([old.iterations, out.iterations[new]])[keep],
            )

    def _candidates(self, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's answers for ``(N, 4, 4)`` poses: weights ``(N, K)`` and joints
        ``(N, K, 6)``, most probable first (K = 1, weight 1, for a single-answer model)."""
        features = encode_pose_matrices(poses, self.input_encoding, self.robot)
        return decode_candidates(self.network(features), self.output_encoding)

    def _answers(self, poses: np.ndarray) -> list[np.ndarray]:
        """The network's answers for ``(N, 4, 4)`` poses: one ``(N, 6)`` array per component,
        most probable first (one array for a single-answer model)."""
        q = self._candidates(poses)[1]
        return [np.ascontiguousarray(q[:, i]) for i in range(q.shape[1])]

    def predict(self, poses: np.ndarray) -> np.ndarray:
        """The network's most probable joints for ``(N, 4, 4)`` poses (radians, not refined)."""
        return self._answers(poses)[0]

    def solve_path(
        self,
        poses: object,
        q_start: object,
        *,
        max_joint_step: float | None = None,
        **options: object,
    ) -> PathResult:
        """Follow a sequence of poses ``(N, 4, 4)`` (a Cartesian line, a circle) from the joints
        ``q_start`` ``(6,)``: each pose is solved seeded by the previous answer (the nearest
        exact solution, :meth:`solve`), so the path stays on one branch. ``joint_step`` is each
        step's largest joint change from its seed; with ``max_joint_step`` a larger jump makes
        that step not a success (reported, never hidden). After a failed step the next is seeded,
        and its jump measured, from the last successful answer. ``options``: :meth:`solve`'s refinement options."""
        poses = validate_poses(as_pose_batch(poses))
        previous = _seed_batch(q_start, 1, "q_start")[0]
        start, inside = into_limits(previous[None], *self.robot.qlim)
        if not inside[0]:
            outside = np.flatnonzero((start[0] < self.robot.qlim[0]) | (start[0] > self.robot.qlim[1]))
            raise ValueError(f"q_start is outside the joint limits in joints {outside.tolist()}: no path starts there")
        previous = start[0]
        rows, seeds = [], []
        for pose in poses:
            seeds.append(previous)  # each step is seeded, and its jump measured, from here
            step = self.solve(pose[None], q_seed=previous, max_joint_step=max_joint_step, **options)
            rows.append(step)
            if step.success[0]:
                previous = step.q[0]
        rows = rows or [self.solve(poses, **options)]  # a path of no poses: the empty answer
        fields = {f: np.concatenate([getattr(r, f) for r in rows]) for f in IKResult.__dataclass_fields__}
        return PathResult(**fields, joint_step=joint_distance(fields["q"], np.reshape(seeds, (-1, 6))))


def _model_files(uri: str) -> tuple[Path, dict]:
    """A model's local directory (downloaded for an MLflow URI) and its parsed MLmodel file.
    Read as YAML, not through ``mlflow.models.Model``, which imports pandas."""
    import mlflow
    import yaml

    # robot code wants silence: no "Downloading artifacts" bars (set the variable to "true" for them)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = Path(uri) if Path(uri).exists() else Path(mlflow.artifacts.download_artifacts(uri))
        spec = yaml.safe_load((local / "MLmodel").read_text())
    except Exception as exc:  # MLflow raises several types for a bad URI
        raise ValueError(f"cannot load an MLflow model from {uri!r}: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"cannot load an MLflow model from {uri!r}: its MLmodel file is not a mapping")
    return local.resolve(), spec


def _load_keras(source: str) -> object:
    """A Keras network logged with MLflow's tensorflow flavor (needs TensorFlow)."""
    import mlflow

    # compile=False: inference needs no loss, and a custom one (wrapped_angle_loss) would
    # otherwise have to be importable by name
    return mlflow.tensorflow.load_model(source, keras_model_kwargs={"compile": False})


_PREDICT_CHUNK = 65536
# A seeded row whose refinement from the seed lands an exact solution this close to the seed
# (largest joint difference) needs no network pass (IKSolver._refine_seeded says why).
SEED_SETTLED_RAD = 0.15


def predict_joints(model: object, features: np.ndarray, output_encoding: str) -> np.ndarray:
    """Raw pose features ``(N, F)`` through a Keras ``model`` -> decoded joint angles ``(N, 6)`` radians."""
    return decode_outputs(raw_outputs(model, features), output_encoding)


def raw_outputs(model: object, features: np.ndarray) -> np.ndarray:
    """A Keras ``model``'s outputs for raw pose features ``(N, F)``, not decoded."""
    # predict_on_batch over large chunks: model.predict's per-call data pipeline costs
    # 3x the forward pass of a 4x256 MLP on 10k rows here; chunks bound the memory.
    chunks = [
        model.predict_on_batch(features[start : start + _PREDICT_CHUNK])
        for start in range(0, len(features), _PREDICT_CHUNK)
    ]
    return np.concatenate([np.asarray(c) for c in chunks]) if chunks else np.zeros((0,) + model.output_shape[1:])


def as_pose_batch(poses: object) -> np.ndarray:
    """``(N, 4, 4)``, ``(4, 4)`` or spatialmath ``SE3`` (one or many) -> ``(N, 4, 4)`` float64."""
    if hasattr(poses, "A") and type(poses).__name__ == "SE3":
        matrices = poses.A
        poses = np.asarray(matrices if isinstance(matrices, np.ndarray) else list(matrices))
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape == (4, 4):
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4), (4, 4) or SE3, got shape {poses.shape}")
    return poses


def joint_distance(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Largest joint difference of each row, wrapped to [0, pi]: ``(N, 6), (N, 6)`` -> ``(N,)`` radians."""
    return np.max(np.abs(wrap_angle(q - reference)), axis=1)


def _seed_batch(q_seed: object, n: int, name: str = "q_seed") -> np.ndarray | None:
    """``(6,)`` or ``(N, 6)`` finite radians -> ``(N, 6)``; None stays None. ``name``: the
    argument, as the error names it."""
    if q_seed is None:
        return None
    try:
        seed = np.asarray(q_seed, dtype=np.float64)
    except (TypeError, ValueError):  # a string, a ragged list
        raise ValueError(
            f"{name} must be joint angles in radians, (6,) or (N, 6) numbers; got {shown(q_seed)}"
        ) from None
    if seed.shape == (6,):
        seed = np.tile(seed, (n, 1))
    if seed.shape != (n, 6):
        raise ValueError(f"{name} must have shape (6,) or ({n}, 6) for {n} poses, got {seed.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(seed), axis=1))
    if bad.size:
        raise ValueError(f"{name} has NaN or infinite values in rows {row_list(bad)}")
    return seed


def _rows_of(result: RefineResult, rows: np.ndarray) -> RefineResult:
    return RefineResult(**{name: getattr(result, name)[rows] for name in RefineResult.__dataclass_fields__})


def _merge_rows(base: RefineResult, rows: np.ndarray, replacement: RefineResult) -> RefineResult:
    """``base`` with its ``rows`` replaced by ``replacement``'s rows, in order."""
    fields = {}
    for name in RefineResult.__dataclass_fields__:
        merged = getattr(base, name).copy()
        merged[rows] = getattr(replacement, name)
        fields[name] = merged
    return RefineResult(**fields)


def _nearest_exact(candidates: list[RefineResult], seed: np.ndarray) -> RefineResult:
    """Per row, the candidate nearest ``seed`` among the exact ones (the first if none is)."""
    distance = np.stack([joint_distance(c.q, seed) for c in candidates])  # (K, N)
    exact = np.stack([c.success for c in candidates])
    choice = np.argmin(np.where(exact, distance, np.inf), axis=0)
    choice[~exact.any(axis=0)] = 0
    rows = np.arange(len(seed))

    def pick(field: str) -> np.ndarray:
        return np.stack([getattr(c, field) for c in candidates])[choice, rows]

    fields = ("q", "position_error_m", "rotation_error_rad", "success", "iterations")
    return RefineResult(**{field: pick(field) for field in fields})
