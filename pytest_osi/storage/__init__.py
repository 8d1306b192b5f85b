"""Storage: what a run keeps between runs -- verdict snapshots (``snapshots.py``, through
syrupy) and the call store (``pytest_osi.calls.store``)."""
