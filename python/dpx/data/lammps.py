"""LAMMPS data files (atom_style atomic, units metal) from DeePMD systems, for running a frozen
model with `pair_style deepmd model.pth` and `pair_coeff * *`.

    write_lammps_data("water.lmp", "data/valid/water_024", type_map=["O", "H"], replicate=(4, 4, 4))

LAMMPS type t+1 is model type t (the model's type_map order), which is what `pair_coeff * *`
expects. Atom i of frame image (ix, iy, iz) gets id 1 + image * natoms + i, images in C order,
so id - 1 modulo natoms is the atom's index in the system. Coordinates are written with 17
significant digits: LAMMPS reads back the same doubles.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from dpx.data.system import read_system

log = logging.getLogger(__name__)

MASSES = {"H": 1.008, "He": 4.0026, "Li": 6.94, "C": 12.011, "N": 14.007, "O": 15.999,
          "F": 18.998, "Na": 22.99, "Mg": 24.305, "Al": 26.982, "Si": 28.085, "P": 30.974,
          "S": 32.06, "Cl": 35.45, "K": 39.098, "Ca": 40.078, "Fe": 55.845, "Cu": 63.546,
          "Zn": 65.38}


def lammps_box(cell: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(lo-hi lengths [3], tilts xy xz yz) of a cell whose rows a, b, c are in LAMMPS's
    restricted form a = (ax, 0, 0), b = (bx, by, 0), c = (cx, cy, cz)."""
    cell = np.asarray(cell, float).reshape(3, 3)
    if np.any(cell[np.triu_indices(3, 1)] != 0) or np.any(np.diag(cell) <= 0):
        raise ValueError(f"{where}: cell {cell.tolist()} is not in LAMMPS's form (a along x, "
                         "b in the xy plane, positive diagonal); rotate the frame first")
    return np.diag(cell).copy(), np.array([cell[1, 0], cell[2, 0], cell[2, 1]])


def lammps_data_text(coord, cell, atype, type_map, masses: dict | None = None,
                     replicate=(1, 1, 1), where: str = "frame") -> str:
    """The data file of one frame: coord [natoms, 3], cell [3, 3] (rows = cell vectors),
    atype [natoms] model type indices into type_map, replicated nx x ny x nz times."""
    coord = np.asarray(coord, float).reshape(-1, 3)
    cell = np.asarray(cell, float).reshape(3, 3)
    atype = np.asarray(atype, int)
    masses = {**MASSES, **(masses or {})}
    missing = [t for t in type_map if t not in masses]
    if missing:
        raise ValueError(f"no mass for element(s) {missing} of type_map {type_map}: "
                         "pass masses={'X': ...}")
    reps = np.asarray(replicate, int)
    if reps.shape != (3,) or np.any(reps < 1):
        raise ValueError(f"replicate {replicate!r}: expected three positive integers")
    lengths, (xy, xz, yz) = lammps_box(cell, where)
    big = cell * reps[:, None]
    shifts = np.array(list(itertools.product(*(range(n) for n in reps))), float) @ cell
    pos = (shifts[:, None, :] + coord[None]).reshape(-1, 3)
    types = np.tile(atype, len(shifts)) + 1
    g = "{:.17g}".format
    lines = [f"# {where}, replicated {reps[0]}x{reps[1]}x{reps[2]}, types: "
             + " ".join(f"{i + 1}={t}" for i, t in enumerate(type_map)), "",
             f"{len(pos)} atoms", f"{len(type_map)} atom types", "",
             f"0 {g(lengths[0] * reps[0])} xlo xhi",
             f"0 {g(lengths[1] * reps[1])} ylo yhi",
             f"0 {g(lengths[2] * reps[2])} zlo zhi"]
    if xy or xz or yz:
        lines.append(f"{g(big[1, 0])} {g(big[2, 0])} {g(big[2, 1])} xy xz yz")
    lines += ["", "Masses", ""]
    lines += [f"{i + 1} {masses[t]} # {t}" for i, t in enumerate(type_map)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} {t} {g(x)} {g(y)} {g(z)}" for i, (t, (x, y, z)) in
              enumerate(zip(types, pos))]
    return "\n".join(lines) + "\n"


def write_lammps_data(path, system, type_map: list[str], frame: int = 0, replicate=(1, 1, 1),
                      masses: dict | None = None) -> Path:
    """Write frame `frame` of the DeePMD system folder `system` as a LAMMPS data file, atoms in
    the file's order, types remapped to `type_map` (the model's) through type_map.raw."""
    sysobj = read_system(str(system), type_map=type_map, sort_atoms=False)
    if sysobj.box is None:
        raise ValueError(f"{system} is not periodic (nopbc); LAMMPS needs a box")
    if not 0 <= frame < sysobj.nframes:
        raise ValueError(f"{system}: frame {frame} out of range (it has {sysobj.nframes})")
    text = lammps_data_text(sysobj.coord[frame], sysobj.box[frame], sysobj.atype, type_map,
                            masses, replicate, where=f"{system} frame {frame}")
    path = Path(path)
    path.write_text(text)
    log.info("wrote %s: %d atoms", path, sysobj.natoms * int(np.prod(replicate)))
    return path
