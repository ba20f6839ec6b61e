"""The MOSIX commands, with the tutorial's exact syntax: one module per command."""
