"""Reporting: the header and terminal summary (``summary.py``) and the JSON report
(``report.py``), both built from one :class:`~pytest_osi.reporting.summary.RunSummary`."""
