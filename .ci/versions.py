"""Print the Python version and the installed versions of jaxgap's dependencies.

``make test`` runs this first, so a CI log shows what the suite ran against (the floors in
``pyproject.toml`` are the versions it was last run with). Never fails: a missing package is
printed as such.
"""

import importlib.metadata as metadata
import platform
import re


def main() -> None:
    try:
        requires = metadata.requires("jaxgap") or []
    except metadata.PackageNotFoundError:
        requires = []
    names = ["jaxlib"] + [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in requires]
    print(f"python {platform.python_version()} ({platform.machine()})")
    for name in dict.fromkeys(names):  # ordered, unique
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        print(f"  {name} {version}")


if __name__ == "__main__":
    main()
