"""Learning: experiment config, datasets (the one door to data_gen), models and losses,
diagnostics, training and its MLflow run. Imports core, robot and data_gen."""
