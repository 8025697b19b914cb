"""mtsmlip: learned multiple-time-step MD for machine-learning interatomic potentials.

A small fast model (short cutoff) and a large slow model are co-trained so that
their sum fits reference energies and forces; MD then evaluates the fast model
every inner step and the slow one only every outer step (r-RESPA).
"""

from ._version import __version__  # noqa: F401


def load(model_dir, teacher=None):
    """Load a trained model directory, or shipped models by name (e.g. "water"):
    returns a :class:`mtsmlip.models.TrainedModels`
    with ``.fast``, ``.slow``, ``.total`` and ``.baseline`` ASE calculators.
    A pair distilled from an external teacher needs that teacher's spec again
    as `teacher` (e.g. ``"ase.calculators.emt:EMT"``)."""
    from .models import TrainedModels

    return TrainedModels.load(model_dir, teacher=teacher)
