"""kgqa's floor: settings, errors, the typed records between packages, question validation and asset paths.

It imports nothing else of the project; every other package may import it.
"""
