"""``bench.platforms``: its probe, and one round against the real Docker daemon (runc)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench import platforms


def test_the_probe_prints_each_probes_samples_as_json() -> None:
    out = subprocess.run([sys.executable, "-c", platforms.PROBE, "5"], capture_output=True, check=True, timeout=60)
    samples = json.loads(out.stdout)
    assert sorted(samples) == ["2000 stat", "python3 -c pass", "spawn true"]
    assert len(samples["spawn true"]) == 3  # the first two are the warm-up
    assert all(value > 0 for values in samples.values() for value in values)


def test_a_round_measures_every_probe_in_a_container_of_each_runtime_and_removes_it(docker_client: Any) -> None:
    samples = platforms.measure(["runc"], rounds=1, spawns=4)
    assert {probe: len(values) for probe, values in samples["runc"].items()} == {
        "spawn true": 2,
        "2000 stat": 3,
        "python3 -c pass": 3,
    }
    assert not docker_client.containers.list(all=True, filters={"name": "aw-bench-platform"})
