"""Generated CRI v1 bindings (runtime.v1); regenerate with `make proto`."""
