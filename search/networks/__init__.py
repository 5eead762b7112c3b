"""Stand-alone networks: training one architecture from scratch with a named recipe."""
