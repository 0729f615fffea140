"""Datasets: HandSim (generated), FPHAB and HO3D (read from a user's disk), protocols."""
