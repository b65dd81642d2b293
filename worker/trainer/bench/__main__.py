"""``python -m taas.worker.trainer.bench``: the command line of ``cli``."""

from taas.worker.trainer.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
