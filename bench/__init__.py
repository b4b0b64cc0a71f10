"""The benchmark harness: each module measures one path against a raw baseline in the same run."""
