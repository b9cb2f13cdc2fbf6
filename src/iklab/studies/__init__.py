"""Studies: many trainings compared: the Optuna search and its champion policy (registry), shared
services for many workers, diagnosis cases and ablations. Imports learning, robot and core."""
