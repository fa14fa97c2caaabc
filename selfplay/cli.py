"""The `selfplay` command: envs, play, train, eval, replay, view.

`train`, `play` and `eval` are Hydra applications over ``conf/config.yaml`` (``key=value``
overrides, ``--cfg job`` to print the composed config, ``--config-dir DIR`` to add a folder of the
user's own YAML files, e.g. ``DIR/env/nim.yaml``). ``envs``, ``replay`` and ``view`` take plain
arguments.

Environments registered by a user's module are found by importing that module first: name it in
the config (``env.module=mypkg.nim``) or in ``SELFPLAY_ENV_MODULES`` (comma-separated), which every
command honours. That module is looked up in the current directory first, as ``python -m`` would
(a console script does not put it on the path), so ``nim.py`` next to the user is found.

A mistake in what the user asked for (a ``UserError``: a config value, an env id, a dataset line)
is printed as one block on stderr with exit status 2, never as a traceback; a full disk is one
block too (exit status 1: what is committed is intact, resume once there is space);
``SELFPLAY_DEBUG=1`` (or Hydra's own ``HYDRA_FULL_ERROR=1``) shows the traceback behind either.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from selfplay.errors import UserError, disk_full_error, disk_full_message


def find_conf_dir() -> Path:
    """The Hydra configs: the copy a built package ships as ``selfplay/conf`` (setup.py), else
    the repository's ``conf/`` beside the package (a source checkout or an editable install)."""
    packaged = Path(__file__).resolve().parent / "conf"
    if (packaged / "config.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = find_conf_dir()

USAGE = """usage: selfplay COMMAND [ARGS]

commands:
  envs                      registered environments, one line each
  play  [key=value ...]     a person against a reference player (player=...) in the terminal
  train [key=value ...]     long-running online training (Hydra config, conf/config.yaml)
  eval  [key=value ...]     a checkpoint or run: games against an opponent (checkpoint=..., player=...),
                            text tasks: pass@k on held-out problems (env=math sampling.k=8)
  replay RUN_DIR [...]      episodes of a run: list, play back, export (selfplay replay -h)
  view RUN_DIR [--port N]   a run and its episodes in the browser, read-only (selfplay view -h)

Hydra options work after train/play/eval: --cfg job, --help, --config-dir DIR.
"""


DEBUG_VARIABLES = ("SELFPLAY_DEBUG", "HYDRA_FULL_ERROR")


def show_tracebacks() -> bool:
    """Whether the user asked to see the traceback behind a user error."""
    return any(os.environ.get(name, "").strip() not in ("", "0") for name in DEBUG_VARIABLES)


def import_user_env_modules() -> None:
    from envs.registration import import_env_module

    for module in filter(None, os.environ.get("SELFPLAY_ENV_MODULES", "").split(",")):
        import_env_module(module.strip())


def run_hydra_command(command: str, task: Callable[[object], int | None], argv: Sequence[str]) -> int:
    """Run ``task(cfg)`` as a Hydra application with ``argv`` as its command line."""
    import hydra

    from selfplay.config import register_configs

    register_configs()
    result: dict[str, int | None] = {}

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _app(cfg) -> None:
        try:
            result["rc"] = task(cfg)
        except UserError as err:
            if show_tracebacks():
                raise
            print(f"selfplay {command}: {err}", file=sys.stderr)
            result["rc"] = 2
        except Exception as err:  # a full disk is the machine's state, not a bug: one block too
            full = disk_full_error(err)
            if full is None or show_tracebacks():
                raise
            # The other actors' writes fail too; Ray would print each failed call nobody waited
            # for as a traceback when its reference is dropped at exit, after this message.
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
            print(f"selfplay {command}: {disk_full_message(full)}", file=sys.stderr)
            result["rc"] = 1

    saved = sys.argv
    sys.argv = [f"selfplay {command}", *argv]
    try:
        _app()
    finally:
        sys.argv = saved
    return int(result.get("rc") or 0)


def cmd_envs(argv: Sequence[str]) -> int:
    import envs  # noqa: F401
    from envs.registration import env_summary, import_env_module, selfplay_env_ids

    args = list(argv)
    while args and args[0] in ("--import", "-m"):
        if len(args) < 2:
            raise UserError("--import needs a module name")
        import_env_module(args[1])
        args = args[2:]
    if args:
        raise UserError(f"unexpected arguments {args}; usage: selfplay envs [--import MODULE]")
    ids = selfplay_env_ids()
    width = max(len(i) for i in ids)
    for env_id in ids:
        print(f"{env_id:<{width}}  {env_summary(env_id)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Loading or saving a tiny checkpoint should not print a progress bar each time.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if show_tracebacks():  # SELFPLAY_DEBUG=1: Hydra's whole stack too, not its trimmed one
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        import_user_env_modules()
        if command == "envs":
            return cmd_envs(rest)
        if command == "play":
            from selfplay.play import play_main

            return run_hydra_command("play", play_main, rest)
        if command == "train":
            from selfplay.train import train_main

            return run_hydra_command("train", train_main, rest)
        if command == "eval":
            from selfplay.evaluate import eval_main

            return run_hydra_command("eval", eval_main, rest)
        if command == "replay":
            from selfplay.replay.cli import replay_main

            return replay_main(rest)
        if command == "view":
            from selfplay.view.cli import view_main

            return view_main(rest)
    except (UserError, ImportError) as err:
        if show_tracebacks():
            raise
        print(f"selfplay {command}: {err}", file=sys.stderr)
        return 2
    print(f"selfplay: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
