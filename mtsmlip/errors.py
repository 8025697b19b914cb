"""The errors mtsmlip raises for bad input (the ground floor: imports nothing).

Every message names what is wrong and where: the file, the frame (0-based) and
the field, or the command-line option.
"""


class DataError(ValueError):
    """Bad input data, file or option; the message names file, frame and field."""
