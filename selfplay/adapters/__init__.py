"""Bridges between selfplay and other libraries; each module is imported on its own, never here.

Environments from the ecosystem (each needs its extra; importing the module registers its ids in
gymnasium's registry, so a config selects one with ``env.module`` and ``env.id``):

- ``openspiel``: OpenSpiel's two-player board games (``openspiel/<name>-v0``,
  ``openspiel/Game-v0`` with ``game="hex(board_size=5)"``), ``pip install 'selfplay[openspiel]'``;
- ``reasoning_gym``: reasoning-gym's tasks as text envs (``reasoning_gym/<task>-v0``),
  ``pip install 'selfplay[reasoning-gym]'``;
- ``textarena``: TextArena's two-player games (``textarena/TicTacToe-v0``, ...),
  ``pip install 'selfplay[textarena]'``.

    selfplay train env=openspiel_hex run.dir=runs/hex       # conf/env/openspiel_*.yaml
    selfplay eval env=reasoning_gym env.id=reasoning_gym/chain_sum-v0 games=20
    selfplay play env=textarena_tictactoe player=random

``history`` holds what the two game adapters share (a ``Game`` whose state is the move history).
RLlib: ``rllib_env``, ``rllib_module``, ``rllib_train``.
"""
