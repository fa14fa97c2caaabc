"""Built-in environments, registered in gymnasium's registry under ``selfplay/<Name>-v<N>``.

All registrations stand in the one list below; entry points are strings, so importing this
package imports no environment module. A user's own environment is registered the same way
from their own module with ``selfplay.register_env`` (see the README).
"""

from __future__ import annotations

from envs.registration import BUILTIN_ENVS, register_builtin_envs

register_builtin_envs()

__all__ = ["BUILTIN_ENVS"]
