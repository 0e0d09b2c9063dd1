# blurvid-rig: the two set-up commands of the README.
#   make run   - create .venv, install, open the rig window on the simulated rig (no display: run the demo)
#   make test  - install what the tests need (apt when root), create .venv, run every check and test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the tests use: hdf5-tools (captures must be readable by the standard HDF5 tools), the
# system libraries Qt needs to load (pytest-qt imports QtGui/QtWidgets when pytest starts), and the
# shutter firmware's toolchain: the AVR compiler and Arduino core, simavr to run it, clang's libFuzzer
# for the protocol parser, avrdude to flash a board; and the free-licence photographs the learned
# reconstruction's synthetic scenes are cut from; Xvfb and the X11 libraries of Qt's xcb plugin, for
# screenshots of the rig window in a real (virtual) X server.
APT_PACKAGES := git hdf5-tools libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 \
	make gcc libc6-dev gcc-avr avr-libc arduino-core-avr libsimavr-dev libelf-dev simavr \
	clang libclang-rt-14-dev avrdude lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds \
	xvfb xauth libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 \
	libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0
OUT ?= out/demo

.PHONY: run test venv apt lint bench clean

run: venv
	$(BIN)/blurvid-rig gui --fallback-demo $(OUT)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null || { \
	  echo "blurvid-rig needs Python >= 3.11 as '$(PYTHON)'; on Debian 12: apt-get install python3 python3-venv"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "Python's venv module is missing. Install it with:  sudo apt-get install -y python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	@touch $@

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages the tests need:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "The tests need Debian packages that are not installed. Run:"; \
	    echo "    sudo apt-get install -y$$missing"; \
	    echo "then 'make test' again."; exit 1; \
	  fi; \
	fi

lint: venv
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python scripts/import_cycles.py

test: apt venv lint
	$(BIN)/python scripts/fetch_genicam_producers.py
	rm -f firmware/build/fuzz-summary.txt
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest
	@cat firmware/build/fuzz-summary.txt 2>/dev/null || true

bench: venv
	$(BIN)/python bench/bench_capture.py
	$(BIN)/python bench/bench_recon.py
	$(BIN)/python bench/bench_motion.py
	$(MAKE) -C firmware all sim
	$(BIN)/python bench/bench_shutter.py
	$(BIN)/python bench/bench_calibration.py

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache *.egg-info firmware/build
