"""The `rnnzoo` command line: one entry point above both halves of the project.

`zoo` (the models, their training and export) and `streaming` (serving them reading by reading) never import
this package; it registers the zoo's commands and the streaming sub-commands (`streaming.cli.register`).
"""
