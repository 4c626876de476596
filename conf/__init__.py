"""Hydra config tree; a package so that tools can compose it with initialize_config_module("conf")."""
