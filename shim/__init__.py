"""cri-shim: a CRI v1 runtime shim over Docker with CNI pod networking."""

__version__ = "0.1.0"
