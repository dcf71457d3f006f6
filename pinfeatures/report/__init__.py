"""The build report: one self-contained HTML page."""
