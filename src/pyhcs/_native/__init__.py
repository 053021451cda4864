"""The native layer: which library (``_library``), which backend (``_backend``), the
records and constants both backends share (``_types``), the callback dispatcher
(``_dispatch``), interruptible synchronous calls (``_blocking``) and the two backends,
``cython`` (compiled) and ``ctypes``. Imports nothing above it (tests/layout/test_import_contract.py)."""
