"""The reasoning-gym scorer process (run by path; imports only reasoning_gym and the stdlib).

A policy's answer is untrusted input and some tasks parse it with sympy, which can run for ever
on a crafted expression; so ``ReasoningGymEnv`` asks this process, which its parent kills when
a call runs past the limit. Requests and replies are JSON lines on stdin/stdout:

    {"task": "chain_sum", "config": {...}, "seed": 0, "size": 10000, "index": 17, "answer": "42"}
    -> {"score": 1.0}   or   {"error": "ValueError: ..."}

The entry is rebuilt here from the dataset's (config, seed, size) and the index, so the scorer
sees exactly the entry the env showed (reasoning-gym items are a pure function of seed and index).
"""

from __future__ import annotations

import json
import os
import resource
import sys

# Run by path, this folder is sys.path[0], and its reasoning_gym.py (the adapter) would shadow
# the library.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def limit(memory_bytes: int) -> None:
    """Capped memory (a huge power in an answer fails here, not the host), no file written, no
    core dump: an answer can run code through a task's sympy parsing, which is no sandbox."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> None:
    if len(sys.argv) > 1:
        limit(int(sys.argv[1]))
    import reasoning_gym

    datasets: dict[str, object] = {}
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            key = json.dumps([request["task"], request["config"], request["seed"],
                              request["size"]], sort_keys=True)
            if key not in datasets:
                datasets[key] = reasoning_gym.create_dataset(
                    request["task"], **request["config"], seed=request["seed"],
                    size=request["size"])
            dataset = datasets[key]
            score = float(dataset.score_answer(request["answer"], dataset[request["index"]]))
            reply = {"score": score}
        except Exception as err:  # noqa: BLE001  (a scorer's bug becomes a reply, not a death)
            reply = {"error": f"{type(err).__name__}: {err}"[:500]}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
