"""Storage backends of DeePMD systems, one module per layout: npy folders (npy.py) and HDF5
groups (hdf5.py) give a *node*: where(rel) for messages, has(rel), sets(), words(rel) for text
files, array(rel) for arrays, frames(rel) for frame files read when drawn, stamp() for what
was read (a stat file's record of its data); the readers in system.py see only nodes.
DeePMD-kit's LMDB data set (lmdb.py), one database of frames of any composition, has no
folders of sets: its module reads it into Systems itself."""
import hashlib


def digest(record) -> str:
    return hashlib.sha1(repr(record).encode()).hexdigest()
