"""The caption stage: image reading, model backends, the loop, the cache, quality filters."""
