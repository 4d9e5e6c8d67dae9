"""Command line entry point (placeholder while the skeleton is built)."""


def main() -> None:
    print("segsync")
