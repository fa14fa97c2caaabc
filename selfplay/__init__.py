"""selfplay: AlphaZero-style self-play reinforcement learning with language-model policies."""

from envs.registration import make_env, register_env

__version__ = "0.1.0"
__all__ = ["make_env", "register_env", "__version__"]
