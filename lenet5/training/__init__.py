"""What every train.py runs around its framework's step: its command line (cli), the loop (loop.fit),
the run folder's writer (run) and reader (runfolder), checkpoints, stopping, and data-parallel runs."""
