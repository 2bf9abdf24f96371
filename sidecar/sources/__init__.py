"""Sources of observations: log files, probes, metrics, containers."""
