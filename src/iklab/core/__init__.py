"""Core: serial-chain kinematics (FK, Jacobians, rotations), regions, pose encodings, the mixture
layout, exact refinement and solution sets; pure batched numpy and numba. Imports nothing of iklab's
outside core (roboticstoolbox only inside the functions that load a robot by name)."""
