"""``scalewise.yaml`` + ``SCALEWISE_*`` variables → one validated :class:`ScalewiseConfig`.

Example::

    config = load_config()  # ./scalewise.yaml or $SCALEWISE_CONFIG, then the environment
    options = config.metrics_options()  # the runtime MetricsOptions the middleware takes
"""

from __future__ import annotations

from scalewise.config.loader import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_ALIASES,
    ENV_PREFIX,
    load_config,
)
from scalewise.config.model import EndpointsSection, MetricsSection, ScalewiseConfig

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_ALIASES",
    "ENV_PREFIX",
    "EndpointsSection",
    "MetricsSection",
    "ScalewiseConfig",
    "load_config",
]
