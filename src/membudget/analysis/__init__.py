"""Analysis of a results store: scenario tables, Pareto frontiers, the scale threshold."""
