"""A transform function importable by dotted path from tests (config ``transforms``)."""


def add_flag(doc):
    doc["transformed"] = True
    return doc
