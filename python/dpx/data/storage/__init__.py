"""Storage backends of DeePMD systems, one module per layout: npy folders (npy.py) and HDF5
groups (hdf5.py). A backend gives a *node*: where(rel) for messages, has(rel), sets(),
words(rel) for text files, array(rel) for arrays; the readers in system.py see only nodes."""
