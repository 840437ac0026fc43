"""Reference implementations of ported models, written from the original code, for equivalence tests."""
