# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export HF_HUB_OFFLINE ?= 1

# Exact versions from constraints.txt (setup.cfg only declares ranges). torch is pinned in the
# same pip command as everything else, so that pip takes the CPU build that lies on disk instead
# of pulling a multi-GB CUDA build for an unpinned dependency.
$(BIN)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0" -e ".[all,test]"
	touch $@

.PHONY: install demo test clean
install: $(BIN)/.installed

demo: install
	$(BIN)/python -m psi_gym.showcase

test: install
	$(BIN)/python -m pytest -q -x --timeout 600 tests

clean:
	rm -rf $(VENV) runs
