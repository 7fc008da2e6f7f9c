"""psi_gym: Gymnasium environments inside a learned video world model (Psi-W0)."""

import os

# Headless rendering: MuJoCo picks its GL backend when first imported, so say EGL before any
# submodule imports it (a user's own MUJOCO_GL wins).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] in ("egl", "osmesa") else "egl")

__version__ = "0.1.0"


def _register_envs() -> None:
    # Gymnasium resolves string entry points when an env is made, so this imports no torch.
    from gymnasium.envs.registration import register, registry

    if "PsiW0-Retarget-v0" not in registry:
        register(
            id="PsiW0-Retarget-v0",
            entry_point="psi_gym.envs.psi_w0_retarget:PsiW0RetargetEnv",
            vector_entry_point="psi_gym.envs.psi_w0_retarget_vector:PsiW0RetargetVectorEnv",
        )


_register_envs()
