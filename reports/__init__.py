"""reports: HTML rendering of stored results. Never recomputes a metric."""
