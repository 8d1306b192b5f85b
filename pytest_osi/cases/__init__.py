"""Case kinds: what a run evaluates. Each kind (the prompt-set today) owns its data model and
loader, its pipeline, its result, its checks and its metrics, and registers them in
:mod:`pytest_osi.cases.base`'s registry."""
