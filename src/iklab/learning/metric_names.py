"""Names of the metrics one module writes and others read (the search, the registry, the
runs table, the plots). Spelled here once; everything else imports them.
"""

# Task-space error summary of a set of predictions (evaluation.ErrorReport.summary)
POSITION_MEDIAN = "position_error_mm_median"
POSITION_P95 = "position_error_mm_p95"
ROTATION_MEDIAN = "rotation_error_deg_median"

# Prefixes under which a finished training run logs those summaries
TEST = "test/"  # the model on the test split
VAL = "val/"  # the model on the validation split (what the search minimizes)
KNN = "baseline/knn/"  # k-nearest-neighbour regressor on the same rows
MEAN = "baseline/mean/"  # predict-the-circular-mean

MIXTURE = "mixture/"  # a mixture model's components (per epoch on the probe; test/mixture/ at the end)
TEST_BEST_COMPONENT = TEST + "best_component/"  # a mixture's best component per pose, raw

TEST_POSITION_MEDIAN = TEST + POSITION_MEDIAN
TEST_EFFECTIVE_COMPONENTS = TEST + MIXTURE + "effective_components_mean"
SOLUTIONS = TEST + "solutions/"  # solution sets of test poses (iklab.learning.branch_coverage)
SOLUTION_COVERAGE = SOLUTIONS + "coverage"  # share of the multi-start reference's solutions found
# The same figures on every run, single-branch or every-branch (branch_coverage.branch_figures),
# so runs of both kinds compare side by side in the UI: the raw network's median errors (a
# mixture's best component), and where solution sets were measured the share of every IK branch
# solve_all returns and its solutions per pose. The run's `branches` tag says which kind it is.
BRANCHES = "branches/"
BRANCHES_RAW_POSITION = BRANCHES + "raw_" + POSITION_MEDIAN
BRANCHES_RAW_ROTATION = BRANCHES + "raw_" + ROTATION_MEDIAN
BRANCHES_COVERAGE = BRANCHES + "coverage"
BRANCHES_SOLUTIONS = BRANCHES + "solutions_per_pose"
BRANCHES_TAG = "branches"
VAL_POSITION_MEDIAN = VAL + POSITION_MEDIAN  # the finished model on the whole validation split
KNN_POSITION_MEDIAN = KNN + POSITION_MEDIAN

# Per-epoch values written into Keras' `logs` by the probes in train() and read by the
# callbacks after them (MLflow logger, the search's pruner)
R2_MEAN = "r2_mean"  # diagnostics: mean R^2 of the probe's joints
DEAD_FRACTION = "dead_fraction/"  # diagnostics: + layer name, share of units dead on the probe
# TaskSpaceProbe, each epoch: median position error (mm) of the diagnostics probe (the first
# probe_rows of the validation split). Not VAL_POSITION_MEDIAN: that is the whole split, once, at the end.
PROBE_POSITION_MM = "val_position_error_mm"  # the metric's name in runs logged since the start
BEST_PROBE_POSITION_MM = "best_val_position_error_mm"  # its minimum over epochs
ELAPSED_SECONDS = "elapsed_seconds"  # EpochLogger: training seconds up to the end of the epoch
