"""Pure mappings between domain rows and FHIR resources (both directions, no I/O).

Rows are plain dicts keyed by column name (what ``select(Model)`` gives with ``row._asdict()`` or
a model's ``__dict__``), so the functions are testable without a database and usable by the
storage seam (``hims.fhir.storage``) when a type is routed to its domain table.
"""
