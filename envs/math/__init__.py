"""Math environments and their verifier.

``answers_match`` decides whether two math answers are the same (math-verify under our own time
limit, in worker processes); ``extract_answer`` finds the final answer in a solution text. The
environments (``envs.math.env``) are imported lazily through gymnasium's registry.
"""

from envs.math.answers import answers_match, answers_match_many, extract_answer

__all__ = ["answers_match", "answers_match_many", "extract_answer"]
