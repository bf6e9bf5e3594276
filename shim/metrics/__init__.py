"""Prometheus metrics of cri-shim (docs/metrics.md lists every family)."""
