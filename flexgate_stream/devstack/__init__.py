"""Only on a developer's machine: the embedded servers, the `make run` launcher and demo traffic."""
