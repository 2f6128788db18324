"""Training the convolutional autoencoder on wafer maps (PyTorch)."""
