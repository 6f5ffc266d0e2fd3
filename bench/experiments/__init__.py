"""Built-in experiments. Importing this package registers them."""
from . import toy_mixture  # noqa: F401
from . import dlc_pipeline  # noqa: F401
from . import eta_sweep  # noqa: F401
from . import composition  # noqa: F401
from . import conditioning  # noqa: F401
from . import fd_vs_steps  # noqa: F401
from . import novelty  # noqa: F401
