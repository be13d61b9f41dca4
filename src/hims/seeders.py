"""Registers every domain's seeder in order (imported lazily by `hims db seed`)."""

from __future__ import annotations

import importlib


def load_seeders() -> None:
    """Import the domain seed modules; each appends to `hims.seed.SEEDERS` once."""
    # Each domain adds its import here, e.g. `import hims.identity.seed`.
    import hims.identity.seed
    import hims.patients.seed
    import hims.practitioners.seed
    import hims.scheduling.seed  # noqa: F401

    # Last (import sorting must not move it): gives the patients seeded above a clinical history.
    importlib.import_module("hims.clinical.seed")
