//! Three-layer budgets.
