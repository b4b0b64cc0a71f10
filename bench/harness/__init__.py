"""`python -m bench`: one harness measuring every scenario beside its raw baseline (and a peer) in one run.

Each scenario module in ``bench.harness.scenarios`` returns ``Scenario`` records
(``bench.harness.results``); ``bench.harness.run`` runs them, then ``report`` and
``charts`` write ``bench/results/`` (JSON, Markdown, PNG). The older one-purpose
scripts (``python -m bench.ping`` and the rest) still run on their own.
"""

from __future__ import annotations

__all__: list[str] = []
