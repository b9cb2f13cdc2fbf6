"""Rotation conversions: iklab.core.kinematics against scipy.spatial.transform.Rotation, same rows, one run.

Times each conversion on --rows random rotations (iklab's; scipy's with the
conventions mapped: scalar-first quaternions with qw >= 0, intrinsic "ZYX"
Euler angles reversed into roll, pitch, yaw; and the hand-written bodies iklab
replaced by scipy calls, kept here), then measures agreement with
spatialmath (roboticstoolbox's reference: r2q, tr2rpy order "zyx") on random
rotations and near gimbal lock, the quaternion sign on rotations by pi, and
what importing scipy.spatial.transform costs.
Run: .venv/bin/python bench/bench_rotations.py [--rows 1000000] [--rounds 7] [--reference-rows 20000]
"""

import argparse
import math
import subprocess
import sys
import warnings

import numpy as np
from scipy.spatial.transform import Rotation
from spatialmath.base import r2q, rpy2r, tr2rpy
from timing import best_seconds

from iklab.core import kinematics as K

# Offsets of pitch from +-pi/2: exact lock, inside rtb's lock test (|R20| within 20 eps of 1,
# i.e. about 9.4e-8 rad), inside scipy's (1e-7 rad, on its quaternion angle), and outside both.
GIMBAL_OFFSETS = (0.0, 1e-12, 1e-9, 9e-8, 9.7e-8, 1e-6)


def scipy_quaternion(rotation, assume_valid=False):
    quat = Rotation.from_matrix(rotation, assume_valid=assume_valid).as_quat(scalar_first=True)
    quat[quat[:, 0] < 0] *= -1.0  # our convention: qw >= 0, pivot component's sign kept at qw == 0
    return quat


def scipy_rpy(rotation):
    # Intrinsic Z-Y'-X'' angles (yaw, pitch, roll) give R = Rz(yaw) Ry(pitch) Rx(roll), tr2rpy's "zyx";
    # at gimbal lock scipy zeroes the third angle, roll, as tr2rpy does.
    return Rotation.from_matrix(rotation, assume_valid=True).as_euler("ZYX", suppress_warnings=True)[:, ::-1]


def scipy_matrix(quat):
    return Rotation.from_quat(quat, scalar_first=True).as_matrix()


def wrapped(difference):
    return np.abs(K.wrap_angle(difference))


def handwritten_matrix_to_quaternion(rotation):
    """Shepperd's method in numpy: iklab's body before it called scipy, verbatim, to compare."""
    r = rotation
    r00, r11, r22 = r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]
    pivots = np.stack([r00 + r11 + r22, r00, r11, r22])
    case = np.argmax(pivots, axis=0)
    quat = np.empty((r.shape[0], 4))
    for k in range(4):
        rows = np.flatnonzero(case == k)
        if rows.size:
            quat[rows] = _quaternion_case(r[rows], k)
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    quat[quat[:, 0] < 0] *= -1.0
    return quat


def _quaternion_case(r, k):
    r00, r01, r02 = r[:, 0, 0], r[:, 0, 1], r[:, 0, 2]
    r10, r11, r12 = r[:, 1, 0], r[:, 1, 1], r[:, 1, 2]
    r20, r21, r22 = r[:, 2, 0], r[:, 2, 1], r[:, 2, 2]
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + r00 + r11 + r22)
        return np.stack([0.25 * s, (r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s], axis=1)
    if k == 1:
        s = 2.0 * np.sqrt(1.0 + r00 - r11 - r22)
        return np.stack([(r21 - r12) / s, 0.25 * s, (r01 + r10) / s, (r02 + r20) / s], axis=1)
    if k == 2:
        s = 2.0 * np.sqrt(1.0 - r00 + r11 - r22)
        return np.stack([(r02 - r20) / s, (r01 + r10) / s, 0.25 * s, (r12 + r21) / s], axis=1)
    s = 2.0 * np.sqrt(1.0 - r00 - r11 + r22)
    return np.stack([(r10 - r01) / s, (r02 + r20) / s, (r12 + r21) / s, 0.25 * s], axis=1)


def handwritten_quaternion_to_matrix(quat):
    """iklab's body before it called scipy, verbatim, to compare."""
    w, x, y, z = (quat / np.linalg.norm(quat, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )


def timings(rotation, quat, rpy, rounds):
    """ns per rotation of iklab's, scipy's (conventions mapped) and the retired hand-written conversions.

    Rounds interleave all calls and each keeps its fastest: another process's load then skews
    every entry of a round alike instead of one.
    """
    rows = len(rotation)
    cases = {  # name: (iklab, scipy, scipy variant, retired hand-written)
        "matrix -> quaternion": (
            lambda: K.matrix_to_quaternion(rotation),
            lambda: scipy_quaternion(rotation, assume_valid=True),
            "from_matrix(assume_valid)",
            lambda: handwritten_matrix_to_quaternion(rotation),
        ),
        "  scipy orthogonalizing": (None, lambda: scipy_quaternion(rotation), "from_matrix", None),
        "quaternion -> matrix": (
            lambda: K.quaternion_to_matrix(quat),
            lambda: scipy_matrix(quat),
            "from_quat",
            lambda: handwritten_quaternion_to_matrix(quat),
        ),
        "matrix -> rpy": (lambda: K.matrix_to_rpy(rotation), lambda: scipy_rpy(rotation), "as_euler('ZYX')", None),
        "rpy -> matrix": (
            lambda: K.rpy_to_matrix(rpy),
            lambda: Rotation.from_euler("ZYX", rpy[:, ::-1]).as_matrix(),
            "from_euler('ZYX')",
            None,
        ),
        "matrix -> 6D": (lambda: K.matrix_to_rot6d(rotation), None, "none in scipy", None),
        "6D -> matrix": (
            lambda: K.rot6d_to_matrix(K.matrix_to_rot6d(rotation)),
            None,
            "none in scipy (Gram-Schmidt)",
            None,
        ),
    }
    best = {(name, column): math.inf for name, case in cases.items() for column in (0, 1, 3) if case[column]}
    for _ in range(rounds):
        for name, column in best:
            best[name, column] = min(best[name, column], best_seconds(cases[name][column], 1)[0])
    ns = {key: 1e9 * seconds / rows for key, seconds in best.items()}
    print(f"\n{rows} random rotations, fastest of {rounds} interleaved rounds, ns per rotation")
    print(f"  {'':24s} {'iklab':>6s} {'scipy':>7s} {'scipy/iklab':>11s} {'retired':>8s}")
    for name, (_, _, variant, _) in cases.items():
        iklab = f"{ns[name, 0]:6.1f}" if (name, 0) in ns else " " * 6
        scipy = f"{ns[name, 1]:7.1f}" if (name, 1) in ns else " " * 7
        ratio = f"{ns[name, 1] / ns[name, 0]:11.2f}" if (name, 0) in ns and (name, 1) in ns else " " * 11
        retired = f"{ns[name, 3]:8.1f}" if (name, 3) in ns else " " * 8
        print(f"  {name:24s} {iklab} {scipy} {ratio} {retired}   [{variant}]")


def per_call_microseconds(rotation, quat):
    """Small batches, as IKSolver.predict sends: per-call overhead, not throughput."""
    print("\nper call, fastest of 4000 (us): rows  iklab m->q  retired m->q  iklab q->m  retired q->m")
    for rows in (1, 100):
        r, q = rotation[:rows].copy(), quat[:rows].copy()
        calls = [
            (K.matrix_to_quaternion, r),
            (handwritten_matrix_to_quaternion, r),
            (K.quaternion_to_matrix, q),
            (handwritten_quaternion_to_matrix, q),
        ]
        times = [1e6 * best_seconds(lambda f=function, x=argument: f(x), 4000)[0] for function, argument in calls]
        print(f"  {rows:35d} {times[0]:10.1f} {times[1]:13.1f} {times[2]:11.1f} {times[3]:12.1f}")


def agreement_random(rotation, quat, count):
    rows = rotation[:count]
    reference_quat = np.array([r2q(r, shortest=True) for r in rows])
    reference_rpy = np.array([tr2rpy(r, order="zyx") for r in rows])
    ours_quat, ours_rpy = K.matrix_to_quaternion(rows), K.matrix_to_rpy(rows)
    print(f"\nagreement with spatialmath on {count} random rotations, max |difference|")
    print(
        f"  quaternion vs r2q(shortest)  ours {np.max(np.abs(ours_quat - reference_quat)):.1e}"
        f"   scipy {np.max(np.abs(scipy_quaternion(rows) - reference_quat)):.1e}"
    )
    print(
        f"  rpy vs tr2rpy('zyx') (rad)   ours {np.max(wrapped(ours_rpy - reference_rpy)):.1e}"
        f"   scipy {np.max(wrapped(scipy_rpy(rows) - reference_rpy)):.1e}"
    )
    print(
        f"  ours vs scipy, all {len(rotation)} rows: quaternion "
        f"{np.max(np.abs(K.matrix_to_quaternion(rotation) - scipy_quaternion(rotation))):.1e}, "
        f"rpy {np.max(wrapped(K.matrix_to_rpy(rotation) - scipy_rpy(rotation))):.1e}, "
        f"quaternion -> matrix {np.max(np.abs(K.quaternion_to_matrix(quat) - scipy_matrix(quat))):.1e}"
    )


def agreement_gimbal_lock(rng, per_offset=500):
    print(f"\nnear gimbal lock: pitch = +-(pi/2 - offset), {per_offset} random roll/yaw each, vs tr2rpy('zyx')")
    print("  offset   rtb locks  scipy locks  ours max|d rpy|  scipy max|d rpy|  round trip ours  scipy")
    for offset in GIMBAL_OFFSETS:
        sign = rng.choice([-1.0, 1.0], per_offset)
        angles = np.column_stack(
            [
                rng.uniform(-math.pi, math.pi, per_offset),
                sign * (math.pi / 2 - offset),
                rng.uniform(-math.pi, math.pi, per_offset),
            ]
        )
        rotation = np.array([rpy2r(*row, order="zyx") for row in angles])
        reference = np.array([tr2rpy(r, order="zyx") for r in rotation])
        ours = K.matrix_to_rpy(rotation)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Rotation.from_matrix(rotation, assume_valid=True).as_euler("ZYX")
        theirs = scipy_rpy(rotation)
        back = [np.max(K.rotation_angle_between(rotation, K.rpy_to_matrix(a))) for a in (ours, theirs)]
        print(
            f"  {offset:7.1e}  {np.mean(reference[:, 0] == 0):9.0%}  {np.mean(theirs[:, 0] == 0):10.0%}"
            f"  {np.max(wrapped(ours - reference)):15.1e}  {np.max(wrapped(theirs - reference)):16.1e}"
            f"  {back[0]:15.1e}  {back[1]:5.1e}" + ("   (scipy warned)" if caught else "")
        )


def quaternion_signs():
    """Rotations by pi (qw == 0): the sign of the vector part is a convention."""
    axes = np.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [-0.3, 0.95, 0], [0.2, -0.5, 0.84], [-0.6, -0.3, 0.74]],
        dtype=np.float64,
    )
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    rotation = 2 * axes[:, :, None] * axes[:, None, :] - np.eye(3)  # R = 2 n n^T - I
    reference = np.array([r2q(r, shortest=True) for r in rotation])
    ours = K.matrix_to_quaternion(rotation)
    canonical = Rotation.from_matrix(rotation).as_quat(canonical=True, scalar_first=True)
    print(f"\nquaternion sign on {len(axes)} rotations by pi (qw = 0), rows equal to r2q(shortest):")
    print(
        f"  ours {np.sum(np.all(np.abs(ours - reference) < 1e-12, axis=1))}/{len(axes)}"
        f"   scipy qw<0 flipped {np.sum(np.all(np.abs(scipy_quaternion(rotation) - reference) < 1e-12, axis=1))}"
        f"/{len(axes)}   scipy as_quat(canonical=True) "
        f"{np.sum(np.all(np.abs(canonical - reference) < 1e-12, axis=1))}/{len(axes)}"
    )


def import_seconds(statement, repeats=5):
    best = math.inf
    for _ in range(repeats):
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        best = min(
            best, float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        )
    return best


def import_costs():
    numpy_s = import_seconds("import numpy")
    scipy_s = import_seconds("import numpy; import scipy.spatial.transform")
    kinematics_s = import_seconds("import iklab.core.kinematics")
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, iklab.core.kinematics; print(sorted(m for m in "
            "('scipy.spatial.transform', 'scipy.linalg', 'scipy.sparse', 'sklearn', 'matplotlib', "
            "'pyarrow', 'optuna') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"\nimport time, best of 5 fresh interpreters: numpy {1e3 * numpy_s:.0f} ms, numpy + "
        f"scipy.spatial.transform {1e3 * scipy_s:.0f} ms (+{1e3 * (scipy_s - numpy_s):.0f} ms), "
        f"iklab.core.kinematics {1e3 * kinematics_s:.0f} ms; loaded by iklab.core.kinematics: {heavy}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--reference-rows",
        type=int,
        default=20_000,
        help="rows compared with spatialmath, which converts one matrix per Python call",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    quat = rng.normal(size=(args.rows, 4))  # uniform on SO(3) once normalized
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    quat[quat[:, 0] < 0] *= -1.0
    rotation = Rotation.from_quat(quat, scalar_first=True).as_matrix()
    rpy = K.matrix_to_rpy(rotation)
    timings(rotation, quat, rpy, args.rounds)
    per_call_microseconds(rotation, quat)
    agreement_random(rotation, quat, args.reference_rows)
    agreement_gimbal_lock(rng)
    quaternion_signs()
    import_costs()


if __name__ == "__main__":
    main()
