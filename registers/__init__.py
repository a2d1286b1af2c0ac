"""Register maps shipped with emtui (TOML data files)."""
