"""The build stage: read, validate, aggregate (DuckDB), text, language, assemble; `run.run_build` composes them."""
