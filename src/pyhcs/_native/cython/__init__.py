"""The compiled backend (Cython): ``_core``, built by setup.py from ``_core.pyx``."""
