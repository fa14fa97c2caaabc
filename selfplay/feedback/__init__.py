"""AI feedback: reward sources beside the environment's own.

- ``base``: the ``Feedback`` / ``PairwiseFeedback`` protocols, ``combine_rewards``, and
  ``build_feedback`` (config -> sources, by a registry of kinds);
- ``judge``: LLM-as-judge over any Engine (pointwise expected score, position-debiased pairwise);
- ``reward_model``: a learned reward model (Bradley–Terry with margin) and where its pairs come from;
- ``process_reward``: per-step scores (a reward model over prefixes, an arithmetic step verifier).

Kept import-light (no torch here): ``selfplay.config`` imports ``feedback.config`` at startup.
"""
