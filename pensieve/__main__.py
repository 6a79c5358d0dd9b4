"""`python -m pensieve`: the `pensieve` command."""

from pensieve.cli import main

if __name__ == "__main__":
    main()
