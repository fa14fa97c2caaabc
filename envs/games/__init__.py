"""The built-in two-player games (tic-tac-toe, connect four): numba rule kernels, ``Game``
classes, batch APIs, gymnasium envs, and reference players (envs.games.players).

Modules are imported on use (gymnasium entry points are strings), so importing this package
compiles nothing.
"""
