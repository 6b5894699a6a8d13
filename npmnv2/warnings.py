"""npmnv2's own warning category (tests turn it into an error)."""


class NpMnV2Warning(UserWarning):
    """Something npmnv2 did that the user should know about (e.g. a freshly initialised head)."""
