"""Reading the user's YAML files (configs, LC task files, search spaces) with one-line errors."""
from pathlib import Path

from kcompress.errors import UsageError


def read_yaml(path, where):
    """The parsed YAML document at ``path``; ``where`` (e.g. ``--config c.yaml``) prefixes errors."""
    import yaml  # only --config and task files need it

    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"{where}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
