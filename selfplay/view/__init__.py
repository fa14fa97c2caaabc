"""`selfplay view RUN_DIR`: a run and its episodes in the browser, read-only and live.

    selfplay view runs/demo                 # http://127.0.0.1:8765/
    selfplay view runs/demo --port 9000 --host 127.0.0.1

The pages (each has a JSON twin: the same path with ``.json``, the same query string):

    /                                   the run: status, versions and gates, Elo, plots, config
    /episodes?env=&version=&...         one row per episode, filtered and paged on the server
    /episodes/ID?step=N                 one episode, stepped through with the keys or buttons
    /episodes/ID/steps/N/search         the search tree behind decision N (search.record_nodes)
    /compare?a=V&b=W[&at=POSITION]      two versions on the positions or prompts both met
    /compare?a=V&b=W&at=...&live=1      ... and both checkpoints run on it now (live.py)

Layout: ``episodes`` (the episode index and the queries over it), ``live`` (checkpoints run
on one position or prompt), ``runs`` (the run's other files), ``scalars`` (TensorBoard event files), ``boards`` and ``plots`` (drawing), ``app`` (the
Starlette app), ``cli`` (the command), ``synthetic`` (run directories for tests and benchmarks).
Nothing here writes into the run directory.
"""
