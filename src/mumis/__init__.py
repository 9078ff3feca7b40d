"""mumis: machine unlearning by minimizing input sensitivity (MU-Mis), with baselines and an
honest evaluation against the retrained model."""

__version__ = "0.1.0"
