"""psi_gym: Gymnasium environments inside a learned video world model (Psi-W0)."""

import os

# Headless rendering: MuJoCo picks its GL backend when first imported, so say EGL before any
# submodule imports it (a user's own MUJOCO_GL wins).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] in ("egl", "osmesa") else "egl")

__version__ = "0.1.0"  # the one place the version is written: setup.cfg reads it (attr:)


def version_string() -> str:
    """``psi-gym 0.1.0 (torch 2.13.0, mujoco 4.0.0, ...; Python 3.11.7)`` for ``psi-gym --version``.

    Reads installed versions from package metadata, importing none of them.
    """
    import platform
    from importlib import metadata

    parts = []
    for name in ("torch", "mujoco", "gymnasium", "diffusers"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} missing")
    return f"psi-gym {__version__} ({', '.join(parts)}; Python {platform.python_version()})"


def _register_envs() -> None:
    # Gymnasium resolves string entry points when an env is made, so this imports no torch.
    from gymnasium.envs.registration import register, registry

    if "PsiW0-Retarget-v0" not in registry:
        register(
            id="PsiW0-Retarget-v0",
            entry_point="psi_gym.envs.psi_w0_retarget:PsiW0RetargetEnv",
            vector_entry_point="psi_gym.envs.psi_w0_retarget_vector:PsiW0RetargetVectorEnv",
        )
    if "PsiSim-Retarget-v0" not in registry:  # the same task in the ground-truth simulator (robot / judge)
        register(
            id="PsiSim-Retarget-v0",
            entry_point="psi_gym.envs.sim_retarget:PsiSimRetargetEnv",
            vector_entry_point="psi_gym.envs.sim_retarget:PsiSimRetargetVectorEnv",
        )


_register_envs()
