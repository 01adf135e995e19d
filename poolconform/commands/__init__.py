"""One module per subcommand; see poolconform.cli."""
