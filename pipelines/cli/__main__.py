"""`python -m pipelines.cli`: the same command as the installed `annotator`."""
from pipelines.cli import main

main()
