from dpx.loss.ener import EnergyLoss

__all__ = ["EnergyLoss"]
