import io
import math

import numpy as np
import pytest
import roboticstoolbox as rtb
from matplotlib.figure import Figure

from iklab.core.kinematics import fk, fk_rotation_translation, matrix_to_quaternion, rotation_angle_between, wrap_angle
from iklab.core.regions import region_preset
from iklab.learning import plots
from iklab.learning import task_errors as E


def pose_features(robot, q):
    """xyz (m) + quaternion: the inputs an IK network sees."""
    rotation, position = fk_rotation_translation(robot, q)
    return np.concatenate([position, matrix_to_quaternion(rotation)], axis=1)


@pytest.fixture(scope="module")
def jaco_working_data():
    from iklab.core.kinematics import load_robot

    robot = load_robot("jaco")
    region = region_preset(robot, "working")
    rng = np.random.default_rng(7)
    q_train = rng.uniform(region.lower, region.upper, size=(20_000, 6))
    q_test = rng.uniform(region.lower, region.upper, size=(1_000, 6))
    return robot, q_train, pose_features(robot, q_train), q_test, pose_features(robot, q_test)


# --- task_space_errors ------------------------------------------------------


def test_true_joints_give_zero_error(jaco, rng):
    q = rng.uniform(jaco.qlim[0], jaco.qlim[1], size=(200, 6))
    report = E.task_space_errors(jaco, q.copy(), q)
    assert report.position_error_mm.shape == (200,) and report.rotation_error_deg.shape == (200,)
    assert report.joint_error_deg.shape == (200, 6)
    assert report.position_error_mm.max() < 1e-9
    assert report.rotation_error_deg.max() < 1e-6
    assert report.joint_error_deg.max() == 0.0


def test_last_joint_rotation_gives_known_errors(jaco, rng):
    q_true = rng.uniform(-math.pi, math.pi, size=(100, 6))
    q_pred = q_true.copy()
    q_pred[:, 5] += math.radians(10.0)
    report = E.task_space_errors(jaco, q_pred, q_true)
    np.testing.assert_allclose(report.joint_error_deg[:, 5], 10.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(report.joint_error_deg[:, :5], 0.0, rtol=0, atol=0)
    # Jaco's last link has a = 0: spinning the wrist moves no point on its axis
    assert report.position_error_mm.max() < 1e-9
    # the rotation error is the angle FK implies: 10 deg about the tool z axis
    np.testing.assert_allclose(report.rotation_error_deg, 10.0, rtol=0, atol=1e-9)
    pred_pose, true_pose = fk(jaco, q_pred), fk(jaco, q_true)
    expected = np.degrees(rotation_angle_between(pred_pose[:, :3, :3], true_pose[:, :3, :3]))
    np.testing.assert_allclose(report.rotation_error_deg, expected, rtol=0, atol=1e-12)
    # and independently, from roboticstoolbox's FK and the trace formula
    reference = rtb.models.DH.Jaco()
    r_pred = np.array(reference.fkine(q_pred[:5]).A)[:, :3, :3]
    r_true = np.array(reference.fkine(q_true[:5]).A)[:, :3, :3]
    trace = np.trace(np.einsum("nji,njk->nik", r_pred, r_true), axis1=1, axis2=2)
    np.testing.assert_allclose(report.rotation_error_deg[:5], np.degrees(np.arccos((trace - 1) / 2)), rtol=0, atol=1e-9)


def test_shifted_target_gives_known_position_error(jaco, rng):
    q = rng.uniform(-math.pi, math.pi, size=(50, 6))
    targets = fk(jaco, q)
    targets[:, :3, 3] += np.array([0.003, 0.0, -0.004])  # 5 mm away
    report = E.task_space_errors(jaco, q, q, target_poses=targets)
    np.testing.assert_allclose(report.position_error_mm, 5.0, rtol=0, atol=1e-9)
    assert report.rotation_error_deg.max() < 1e-6


def test_joint_error_is_wrap_aware(jaco, rng):
    q_true = rng.uniform(-math.pi, math.pi, size=(20, 6))
    report = E.task_space_errors(jaco, q_true + 2 * math.pi, q_true)
    assert report.joint_error_deg.max() < 1e-9
    assert report.position_error_mm.max() < 1e-9
    q_true = np.radians([[179.0, -179.0, 0.0, 90.0, -90.0, 180.0]])
    q_pred = np.radians([[-179.0, 179.0, 360.0, -270.0, 270.0, -180.0]])
    report = E.task_space_errors(jaco, q_pred, q_true)
    np.testing.assert_allclose(report.joint_error_deg[0], [2.0, 2.0, 0.0, 0.0, 0.0, 0.0], rtol=0, atol=1e-9)


def test_bad_shapes_and_targets_raise(jaco):
    q = np.zeros((4, 6))
    with pytest.raises(ValueError, match=r"q_pred must have shape \(N, 6\).*\(4, 5\)"):
        E.task_space_errors(jaco, np.zeros((4, 5)), q)
    with pytest.raises(ValueError, match=r"\(3, 6\).*\(4, 6\)"):
        E.task_space_errors(jaco, np.zeros((3, 6)), q)
    with pytest.raises(ValueError, match=r"target_poses must have shape \(4, 4, 4\)"):
        E.task_space_errors(jaco, q, q, target_poses=np.zeros((4, 3, 4)))
    with pytest.raises(ValueError, match="q_true contains NaN"):
        E.task_space_errors(jaco, q, np.full((4, 6), np.nan))
    with pytest.raises(ValueError, match="empty"):
        E.task_space_errors(jaco, np.zeros((0, 6)), np.zeros((0, 6)))


# --- summary ------------------------------------------------------------------


def hand_made_report():
    position = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    rotation = np.array([0.5, 0.1, 0.3, 0.2, 0.4])
    joint = np.arange(30, dtype=float).reshape(5, 6)
    return E.ErrorReport(position, rotation, joint)


def test_summary_keys_and_values_match_numpy():
    report = hand_made_report()
    summary = report.summary("test/")
    joint_keys = [f"test/joint_error_deg_j{j}" for j in range(6)]
    assert set(summary) == {
        "test/position_error_mm_median",
        "test/position_error_mm_mean",
        "test/position_error_mm_p95",
        "test/position_error_mm_max",
        "test/rotation_error_deg_median",
        "test/rotation_error_deg_mean",
        "test/rotation_error_deg_p95",
        "test/joint_error_deg_mean",
        "test/nonfinite_rows",
        *joint_keys,
    }
    assert all(type(value) is float for value in summary.values())
    # by hand: p95 of [1, 2, 3, 4, 10] sits 0.8 of the way from 4 to 10
    assert summary["test/position_error_mm_median"] == pytest.approx(3.0, abs=1e-12)
    assert summary["test/position_error_mm_mean"] == pytest.approx(4.0, abs=1e-12)
    assert summary["test/position_error_mm_p95"] == pytest.approx(8.8, abs=1e-12)
    assert summary["test/position_error_mm_max"] == 10.0
    assert summary["test/rotation_error_deg_median"] == pytest.approx(0.3, abs=1e-12)
    assert summary["test/rotation_error_deg_mean"] == pytest.approx(0.3, abs=1e-12)
    assert summary["test/rotation_error_deg_p95"] == pytest.approx(
        np.percentile(report.rotation_error_deg, 95), abs=1e-12
    )
    assert summary["test/joint_error_deg_mean"] == pytest.approx(14.5, abs=1e-12)
    assert [summary[key] for key in joint_keys] == pytest.approx([12.0, 13.0, 14.0, 15.0, 16.0, 17.0], abs=1e-12)
    assert summary["test/nonfinite_rows"] == 0.0
    assert set(report.summary()) == {key.removeprefix("test/") for key in summary}


def test_nan_predictions_are_counted_not_dropped(jaco, rng):
    q_true = rng.uniform(-math.pi, math.pi, size=(10, 6))
    q_pred = q_true + 0.01
    q_pred[3] = np.nan
    q_pred[7, 2] = np.inf
    report = E.task_space_errors(jaco, q_pred, q_true)
    assert np.isnan(report.position_error_mm[[3, 7]]).all() and np.isnan(report.rotation_error_deg[[3, 7]]).all()
    assert np.isfinite(np.delete(report.position_error_mm, [3, 7])).all()
    summary = report.summary()
    assert summary["nonfinite_rows"] == 2.0
    for key in (
        "position_error_mm_max",
        "position_error_mm_p95",
        "position_error_mm_mean",
        "rotation_error_deg_p95",
        "rotation_error_deg_mean",
        "joint_error_deg_mean",
        "joint_error_deg_j2",
    ):
        assert summary[key] == math.inf, key
    # 8 of 10 rows are fine: the median of all 10 (failures last) is the mean of the 5th and 6th finite
    finite = np.sort(np.delete(report.position_error_mm, [3, 7]))
    assert summary["position_error_mm_median"] == pytest.approx((finite[4] + finite[5]) / 2, rel=1e-12)
    assert summary["joint_error_deg_j0"] == math.inf  # row 3 is NaN in every joint
    # once most rows fail, the median itself is infinite
    q_pred[:6] = np.nan
    assert E.task_space_errors(jaco, q_pred, q_true).summary()["position_error_mm_median"] == math.inf


def test_percentiles_with_inf_follow_numpy_where_defined():
    values = np.array([1.0, 2.0, np.nan, 4.0])  # NaN -> inf -> sorted [1, 2, 4, inf]
    median, p95, maximum = E.percentiles_inf(values)
    assert median == pytest.approx(3.0) and p95 == math.inf and maximum == math.inf
    assert E.percentiles_inf(values, (0.0, 100.0 / 3.0))[0] == 1.0
    assert E.percentiles_inf(values, (200.0 / 3.0,)) == pytest.approx([4.0], abs=1e-12)  # lands on 4, not NaN


# --- baselines ----------------------------------------------------------------


def test_circular_mean_straddling_pi():
    result = E.circular_mean(np.array([[3.1, 0.1], [-3.1, -0.3]]))
    assert result.shape == (2,)
    assert abs(abs(result[0]) - math.pi) < 1e-12  # the naive mean would say 0
    assert result[1] == pytest.approx(-0.1, abs=1e-3)
    with pytest.raises(ValueError, match="non-empty"):
        E.circular_mean(np.zeros((0, 6)))


def test_mean_baseline_repeats_the_circular_mean(rng):
    q_train = rng.uniform(-0.5, 0.5, size=(100, 6)) + np.array([math.pi, 0, 0, 0, 0, 0])
    prediction = E.mean_baseline(q_train, 7)
    assert prediction.shape == (7, 6)
    np.testing.assert_array_equal(prediction, np.tile(E.circular_mean(q_train), (7, 1)))
    assert abs(abs(prediction[0, 0]) - math.pi) < 0.1
    with pytest.raises(ValueError, match="non-negative integer"):
        E.mean_baseline(q_train, -1)


def test_knn_k1_on_training_rows_returns_training_joints(rng):
    features = rng.normal(size=(500, 7))
    q = rng.uniform(-math.pi, math.pi, size=(500, 6))
    prediction = E.knn_baseline(features, q, features, k=1)
    assert prediction.shape == (500, 6)
    np.testing.assert_allclose(np.abs(wrap_angle(prediction - q)), 0.0, rtol=0, atol=1e-12)


def test_knn_subsample_is_seeded_and_bounded(rng):
    features = rng.normal(size=(400, 3))
    q = rng.uniform(-math.pi, math.pi, size=(400, 6))
    first = E.knn_baseline(features, q, features, k=1, max_train_rows=150, seed=3)
    np.testing.assert_array_equal(first, E.knn_baseline(features, q, features, k=1, max_train_rows=150, seed=3))
    exact_rows = np.all(np.abs(wrap_angle(first - q)) < 1e-12, axis=1)
    assert exact_rows.sum() == 150  # only the rows in the subsample find themselves


def test_knn_average_is_wrap_aware():
    features = np.array([[0.0], [0.1], [0.2], [5.0]])
    q = np.tile(np.array([[3.1], [-3.1], [3.0], [0.0]]), (1, 6))
    prediction = E.knn_baseline(features, q, np.array([[0.1]]), k=3)
    np.testing.assert_allclose(prediction[0], E.circular_mean(q[:3])[0], rtol=0, atol=1e-12)
    assert abs(prediction[0, 0]) > 3.0  # near +-pi, not the arithmetic mean 1.0


def test_knn_rejects_bad_input(rng):
    features, q = rng.normal(size=(10, 4)), rng.normal(size=(10, 6))
    with pytest.raises(ValueError, match="same N"):
        E.knn_baseline(features, q[:9], features)
    with pytest.raises(ValueError, match=r"features_query must have shape \(M, 4\)"):
        E.knn_baseline(features, q, features[:, :3])
    with pytest.raises(ValueError, match="k must be between 1 and the 10"):
        E.knn_baseline(features, q, features, k=11)
    with pytest.raises(ValueError, match="features_query contains NaN"):
        E.knn_baseline(features, q, np.full((2, 4), np.nan))


def test_knn_beats_mean_on_jaco_working_region(jaco_working_data):
    robot, q_train, features_train, q_test, features_test = jaco_working_data
    reports = E.evaluate_with_baselines(
        robot, q_test.copy(), q_test, features_train, q_train, features_test, knn_k=3, knn_rows=20_000
    )
    assert list(reports) == ["model", "mean", "knn"]
    assert all(len(report.position_error_mm) == len(q_test) for report in reports.values())
    assert reports["model"].summary()["position_error_mm_max"] < 1e-9
    knn = reports["knn"].summary()["position_error_mm_median"]
    mean = reports["mean"].summary()["position_error_mm_median"]
    # predicting one posture misses by tens of cm; 20k neighbours are a few cm away
    assert mean > 100.0
    assert knn / mean < 0.5
    knn, mean = reports["knn"].summary(), reports["mean"].summary()
    assert knn["rotation_error_deg_median"] < mean["rotation_error_deg_median"]


def test_evaluate_with_baselines_rejects_misaligned_features(jaco_working_data):
    robot, q_train, features_train, q_test, features_test = jaco_working_data
    with pytest.raises(ValueError, match="features_test must have one row per test row"):
        E.evaluate_with_baselines(robot, q_test, q_test, features_train, q_train, features_test[:-1])


# --- plots --------------------------------------------------------------------


def test_error_histograms_figure(jaco, rng):
    q_true = rng.uniform(-math.pi, math.pi, size=(300, 6))
    q_noisy = q_true + rng.normal(scale=0.01, size=q_true.shape)
    q_noisy[0] = np.nan
    reports = {
        "model": E.task_space_errors(jaco, q_noisy, q_true),
        "mean": E.task_space_errors(jaco, E.mean_baseline(q_true, 300), q_true),
        "exact": E.task_space_errors(jaco, q_true, q_true),
    }
    figure = plots.error_histograms(reports, title="jaco test")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    position_axis, rotation_axis = figure.axes
    assert "mm" in position_axis.get_xlabel() and "deg" in rotation_axis.get_xlabel()
    assert position_axis.get_xscale() == "log" and rotation_axis.get_xscale() == "log"
    legend = [text.get_text() for text in position_axis.get_legend().get_texts()]
    assert len(legend) == 3 and all("median" in text for text in legend)
    assert "1 non-finite" in legend[0]
    assert "300 below 0.001" in legend[2]  # exact answers are counted, not drawn as if 7 mm off
    assert position_axis.get_xlim()[0] < 2e-3
    assert len(position_axis.patches) == 3 and len(rotation_axis.patches) == 3  # one outline per report
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # renders through Agg without pyplot
    assert buffer.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="at least one"):
        plots.error_histograms({})
