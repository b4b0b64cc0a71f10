"""Configuration: every variable, its default, its parser; defaults, then a file, then the environment.

``settings`` declares the variables and loads them; ``values`` reads each kind of value.
"""

from runtime.config.settings import DEFAULT_CONFIG_FILE, VARIABLES, Settings, Variable, load_settings
from runtime.config.values import MIN_MEMORY_BYTES, PROVIDERS, parse_size

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "MIN_MEMORY_BYTES",
    "PROVIDERS",
    "VARIABLES",
    "Settings",
    "Variable",
    "load_settings",
    "parse_size",
]
