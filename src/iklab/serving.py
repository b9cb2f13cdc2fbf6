"""Where models logged before the layer folders (commit 72cf481 and earlier) find their pyfunc
wrapper: their `ik_pyfunc_model.py` imports ``iklab.serving.IKPyfuncModel``, so a registered
model of that time still serves (`mlflow models serve`) and loads with `mlflow.pyfunc`. The
wrapper lives in :mod:`iklab.robot.serving`; import it from there."""

from iklab.robot.serving import IKPyfuncModel

__all__ = ["IKPyfuncModel"]
