"""End-to-end benchmarks, each against a named peer measured in the same run.

Run them from the repository root with ``python -m benches [NAME] [OPTIONS]`` (or
``./run bench ...``); results go to ``benches/RESULTS.md``.
"""

BENCHMARKS: dict[str, str] = {
    "pgwire": "benches.pgwire",
    "replication": "benches.replication",
    "replication-e2e": "benches.replication_e2e",
    "proxy": "benches.proxy",
    "writes": "benches.writes",
    "fanout": "benches.fanout",
    "client": "benches.client",
    "publisher": "benches.publisher",
    "frames": "benches.frames",
    "scaling": "benches.scaling",
    "sync": "benches.sync",
}
"""Every benchmark: its name on the command line and the module whose ``main(argv)`` runs it."""
