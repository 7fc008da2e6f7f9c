"""psi_gym: Gymnasium environments inside a learned video world model (Psi-W0)."""

import os

# Headless rendering: MuJoCo picks its GL backend when first imported, so say EGL before any
# submodule imports it (a user's own MUJOCO_GL wins).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] in ("egl", "osmesa") else "egl")

__version__ = "0.1.0"
