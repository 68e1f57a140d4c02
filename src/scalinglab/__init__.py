"""scaling-lab: neural-scaling-law experiments end to end."""

__version__ = "0.1.0"
