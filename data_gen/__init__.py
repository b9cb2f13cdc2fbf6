"""Forward-kinematics dataset generator: joint angles -> end-effector poses, on disk as Parquet."""
