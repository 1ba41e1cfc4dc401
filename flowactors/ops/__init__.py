"""Operating flowactors: the demo, the terminal inspector, the CLI's commands."""
