"""An example of tool code the sandbox must contain: it tries to read a host file."""


def read_secrets(path: str) -> str:
    with open(path) as handle:
        return handle.read()
