# Developer tasks, from a checkout (README.md, Development). Every target works on a fresh clone
# once the development tools are installed (python -m pip install --group dev).
#
#   make build       the emulator and the Cython backend, in place (src/pyhcs)
#   make test        the suite on the in-place build (both backends where the tests take both)
#   make test-ctypes the suite with PYHCS_BACKEND=ctypes
#   make lint        ruff, mypy --strict and pyright --strict (the package, tests/, the README's and
#                    docs' examples), every generator's --check, the import contract
#   make pyright     pyright --strict on the whole package and tests/, then on the README's and
#                    docs' examples
#   make bench       the benchmarks (bench/run.py), a quick run; BENCH_ARGS= for the full one
#   make asan        the suite against the emulator built with AddressSanitizer + UBSan
#                    (ASAN_TESTS= a selection; the whole suite if empty)
#   make windows     the Cython backend cross-compiled for win_amd64 and checked (mingw-w64)
#   make dist        sdist and wheel into dist/
PYTHON ?= python
PYTEST_ARGS ?= -q -p no:cacheprovider
# The suite waits on processes far more than it computes (about a third of a core), so it runs
# in JOBS pytest-xdist workers, more than the cores; each worker has its own private emulator
# service (HCSEMU_SERVICE's default). JOBS=0 runs it in this process.
JOBS ?= 4
SUITE_ARGS = $(PYTEST_ARGS) -n $(JOBS)
ASAN_TESTS ?=
BENCH_ARGS ?= --scale 0.2
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

build:
	$(PYTHON) setup.py build_ext --inplace

test: build
	$(PYTHON) -m pytest $(SUITE_ARGS)

test-ctypes: build
	PYHCS_BACKEND=ctypes $(PYTHON) -m pytest $(SUITE_ARGS)

# mypy and pyright read their files and settings from pyproject.toml.
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	$(PYTHON) -m pyright
	$(PYTHON) -m pytest $(PYTEST_ARGS) tests/api/test_typing.py
	$(PYTHON) tools/gen_errors.py --check
	$(PYTHON) tools/gen_schema.py --check
	$(PYTHON) tools/gen_abi.py --check
	$(PYTHON) -m pytest $(PYTEST_ARGS) tests/layout/test_import_contract.py

# The package and tests/ as pyproject.toml's [tool.pyright] says; the examples as users' code
# sees pyhcs (tests/api/test_typing.py, which the suite runs too).
pyright:
	$(PYTHON) -m pyright
	$(PYTHON) -m pytest $(PYTEST_ARGS) tests/api/test_typing.py

bench: build
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# The library the suite loads is the ASan build; the interpreter is not instrumented, so the
# ASan runtime is preloaded and leak detection (which would report the interpreter's) is off.
asan: build
	$(MAKE) -s -C src/hcsemu SANITIZE=1 OUT=libhcsemu-asan.so DAEMON=hcsemud-asan
	LD_PRELOAD="$$($${CC:-gcc} -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	PYHCS_LIBRARY="$(CURDIR)/src/hcsemu/libhcsemu-asan.so" \
	HCSEMU_DAEMON="$(CURDIR)/src/hcsemu/hcsemud-asan" \
	$(PYTHON) -m pytest $(SUITE_ARGS) $(ASAN_TESTS)

windows:
	PYTHON=$(PYTHON) bash tools/windows/build_core.sh

dist:
	$(PYTHON) -m build --outdir dist

.PHONY: build test test-ctypes lint pyright bench asan windows dist
