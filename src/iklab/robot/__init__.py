"""Robot side: the solver robot code calls (`IKSolver`), the network's numpy runtime, the model's
metadata and the HTTP/pyfunc wrapper. Imports core only, never TensorFlow (`pip install iklab`)."""
