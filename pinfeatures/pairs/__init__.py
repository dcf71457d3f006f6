"""Training and assessment pairs drawn from a build."""
