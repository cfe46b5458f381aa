"""builder layer: platform base images built from distribution packages."""
