"""The peer of ``search_speed.py``: mctx's MuZero search (PUCT, as ours at the same settings) over
pgx's connect four, with a 2x64 MLP evaluator on JAX, all of it one jitted function.

This is what a JAX stack reaches on the same CPU when the evaluator is a tiny MLP and the game
rules are vectorised array code: the ceiling an LM evaluator is measured against. The MLP is
randomly initialised (speed does not depend on its weights). Imported only when ``jax``, ``mctx``
and ``pgx`` are installed (``make bench-setup``).
"""

from __future__ import annotations

import time


def mctx_pgx_sims_per_s(roots: int, simulations: int, repeats: int, hidden: int = 64,
                        seed: int = 0) -> dict:
    """Best-of-``repeats`` simulations/s of mctx.muzero_policy over ``roots`` pgx connect-four
    positions (the initial one, a few random plies in), after a compile call outside the clock."""
    import jax
    import jax.numpy as jnp
    import mctx
    import pgx

    env = pgx.make("connect_four")
    step = jax.vmap(env.step)
    key = jax.random.PRNGKey(seed)
    k1, k2, k3, k4, key = jax.random.split(key, 5)
    obs_size = 6 * 7 * 2

    def dense(k, n_in, n_out):
        return (jax.random.normal(k, (n_in, n_out)) * (2.0 / n_in) ** 0.5, jnp.zeros(n_out))

    params = {"h1": dense(k1, obs_size, hidden), "h2": dense(k2, hidden, hidden),
              "policy": dense(k3, hidden, 7), "value": dense(k4, hidden, 1)}

    def forward(params, observation):
        x = observation.reshape(observation.shape[0], -1).astype(jnp.float32)
        for layer in ("h1", "h2"):
            w, b = params[layer]
            x = jax.nn.relu(x @ w + b)
        logits = x @ params["policy"][0] + params["policy"][1]
        value = jnp.tanh(x @ params["value"][0] + params["value"][1])[:, 0]
        return logits, value

    def masked(logits, legal):
        return jnp.where(legal, logits - logits.max(axis=-1, keepdims=True),
                         jnp.finfo(logits.dtype).min)

    def recurrent_fn(params, rng, action, state):
        mover = state.current_player
        state = step(state, action)
        logits, value = forward(params, state.observation)
        # pgx's rewards are per player; the reward of the move is the mover's, and the next
        # node is the opponent's, so values flip sign (discount -1) until the game ends.
        reward = state.rewards[jnp.arange(state.rewards.shape[0]), mover]
        value = jnp.where(state.terminated, 0.0, value)
        discount = jnp.where(state.terminated, 0.0, -1.0)
        out = mctx.RecurrentFnOutput(reward=reward, discount=discount,
                                     prior_logits=masked(logits, state.legal_action_mask),
                                     value=value)
        return out, state

    @jax.jit
    def search(params, rng, state):
        logits, value = forward(params, state.observation)
        root = mctx.RootFnOutput(prior_logits=masked(logits, state.legal_action_mask),
                                 value=value, embedding=state)
        out = mctx.muzero_policy(params, rng, root, recurrent_fn, num_simulations=simulations,
                                 invalid_actions=~state.legal_action_mask)
        return out.action_weights

    # Roots a few random plies in, as search_speed.py's: the same positions for every repeat.
    state = jax.vmap(env.init)(jax.random.split(key, roots))
    for ply in range(6):
        legal = state.legal_action_mask
        moves = jax.random.categorical(jax.random.PRNGKey(100 + ply), jnp.where(legal, 0.0, -1e9))
        after = step(state, moves)
        state = jax.tree_util.tree_map(
            lambda a, b: jnp.where(after.terminated.reshape((-1,) + (1,) * (a.ndim - 1)), b, a),
            after, state)
    compile_start = time.perf_counter()
    search(params, jax.random.PRNGKey(0), state).block_until_ready()
    compile_s = time.perf_counter() - compile_start
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        search(params, jax.random.PRNGKey(r + 1), state).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return {"wall_s": best, "sims_per_s": roots * simulations / best, "compile_s": compile_s,
            "jax": jax.__version__, "mctx": mctx.__version__, "pgx": pgx.__version__,
            "devices": [str(d) for d in jax.devices()]}
