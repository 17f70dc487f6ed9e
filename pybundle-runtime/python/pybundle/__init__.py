"""Python half of the cargo-pybundle protocol."""
