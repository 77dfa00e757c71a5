"""Pictures: plot functions, run reports, comparisons and activity drawings."""
