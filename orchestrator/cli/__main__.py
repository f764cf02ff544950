"""``python -m orchestrator.cli``: the same as the ``activation`` console script."""

from orchestrator.cli import main

if __name__ == "__main__":
    main()
