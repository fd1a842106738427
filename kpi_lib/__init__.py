"""amoCRM sales KPI reports: the helper library behind the notebooks and ``kpi-report``.

The names notebooks use are listed in ``__all__``.
"""

from .config import Settings, load_settings
from .errors import KpiError
from .periods import Week, parse_week
from .store import Store, load_frames

__version__ = "0.1.0"

__all__ = ["KpiError", "Settings", "Store", "Week", "load_frames", "load_settings", "parse_week", "__version__"]
