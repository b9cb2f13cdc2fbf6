import sys

from iklab.core.install import needs_train_extra

if (message := needs_train_extra("data_gen")) is not None:
    print(message, file=sys.stderr)
    sys.exit(2)

from .cli import main  # noqa: E402 (pyarrow, pandas, tqdm: after the install check)

sys.exit(main())
