"""ddtse: target speech extraction (docs/design.md). Importing the package installs the registries'
loader of built-in components (ddtse/components.py)."""
from ddtse import components as _components
from ddtse import registry as _registry

_registry.install_loader(_components.load)
