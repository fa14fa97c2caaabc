"""Errors that reach the user as one clear message (exit status 2), never as a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for: a config value, an env id, a path, a move."""


def disk_full_error(err: BaseException) -> OSError | None:
    """The "no space left" (or quota) ``OSError`` behind ``err``, if that is what it is: raised
    here or in a Ray actor (``RayTaskError.cause``), directly or as the cause of another error."""
    import errno

    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def disk_full_message(err: OSError) -> str:
    where = f" writing {err.filename}" if err.filename else ""
    return (f"the disk is full ({err.strerror or 'no space left on device'}{where}). What was "
            "committed is intact (every episode and checkpoint is written atomically; only the "
            "write in flight is lost). Free some space, then continue the run with "
            "run.resume=true.")
