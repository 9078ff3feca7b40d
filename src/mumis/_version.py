"""The package version, in a module of its own so that modules inside the package can read it
without importing the package face (`mumis/__init__.py`, which imports most of the package)."""

__version__ = "0.1.0"
