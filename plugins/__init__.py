"""Built-in explainers, each registered through the same hook a third-party plugin uses."""
