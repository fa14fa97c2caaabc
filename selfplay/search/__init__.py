"""Search: PUCT MCTS over a batch of trees, best-of-N, majority vote, pass@k.

Pure logic — the engine and the environment reach it as small callables; nothing here imports a
model. Modules (imported on use, so that loading ``selfplay.search.config`` stays cheap):

- ``tree``: the ``Tree`` dataclass (numpy arrays [B, N, ...]);
- ``action_selection``: PUCT and the batched descent with virtual loss (numba);
- ``mcts``: ``run_mcts(root, expand_fn, ...) -> SearchOutput`` and the backup (numba);
- ``policies``: ``select_action`` / ``visit_distribution`` from root visits;
- ``game_adapter``: ``GameSearch`` over any ``envs.protocol.Game`` and the evaluators;
- ``text_adapter``: ``StepSearch`` over reasoning steps (K sampled candidate steps per node,
  single-agent values from the verifier) and ``solve_with_search``;
- ``best_of_n``: ``best_of_n``, ``majority_vote``, ``pass_at_k``;
- ``reference``: a plain-Python single-tree PUCT (the readable reference and benchmark baseline).
"""
