"""geobasis."""
