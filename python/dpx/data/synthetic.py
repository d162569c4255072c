"""A small labeled water-like data set in DeePMD npy format, made in seconds, no download.

Periodic boxes of rigid-ish water molecules (types O H, type_map.raw "O H") at roughly
liquid density, randomly rotated on a jittered grid so that no two molecules overlap. Labels
come from the built-in smooth Morse pair potential below (numpy only: the same data wherever
it is made), or from ASE's EMT calculator when asked for. Either way forces are -dE/dx and
the virial follows DeePMD: W_ab = -sum_k dE/dr_ka r_kb = -V * stress (eV).

Used by examples/make_data.py (the CLI) and by the tests.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TYPE_MAP = ["O", "H"]
WATER_DENSITY = 0.0334  # molecules / A^3 at 1 g/cm^3
OH_BOND, HOH_ANGLE = 0.9572, math.radians(104.52)
MIN_INTERMOLECULAR = 1.4  # A; closest allowed atoms of different molecules

# Morse D (eV), a (1/A), r0 (A) per type pair, O=0, H=1; switched off smoothly on [RS, RC]
MORSE = np.array([[[0.25, 1.5, 2.9], [1.5, 2.0, 1.0]],
                  [[1.5, 2.0, 1.0], [0.3, 1.8, 1.55]]])
MORSE_RS, MORSE_RC = 3.0, 4.5


# ---------------------------------------------------------------- configurations

def water_frame(nmol: int, rng: np.random.Generator, box_jitter: float = 0.03,
                tilt: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One configuration: atype [3*nmol] (O H H per molecule), coord [3*nmol, 3], cell [3, 3].

    The cell is cubic at WATER_DENSITY, scaled by 1 +- box_jitter, with lower-triangle
    tilts up to `tilt` times the edge (0: cubic). Rows of `cell` are the cell vectors.
    """
    edge = (nmol / WATER_DENSITY) ** (1 / 3) * (1 + rng.uniform(-box_jitter, box_jitter))
    cell = np.eye(3) * edge
    if tilt:
        cell[np.tril_indices(3, -1)] = rng.uniform(-tilt, tilt, 3) * edge
    k = math.ceil(nmol ** (1 / 3))
    sites = rng.choice(k ** 3, nmol, replace=False)
    grid = np.stack(np.unravel_index(sites, (k, k, k)), axis=1)
    placed = np.zeros((0, 3))
    for g in grid:
        placed = np.concatenate([placed, _place(g, k, cell, placed, rng)])
    atype = np.tile([0, 1, 1], nmol)
    return atype, placed, cell


def _place(g, k, cell, placed, rng, tries: int = 200) -> np.ndarray:
    """A molecule near grid site g that keeps MIN_INTERMOLECULAR from those placed."""
    inv = np.linalg.inv(cell)
    for _ in range(tries):
        frac = (g + 0.5 + rng.normal(0.0, 0.04, 3)) / k
        mol = frac @ cell + _molecule(rng) @ _rotation(rng).T
        if not len(placed):
            return mol
        d = (mol[:, None, :] - placed[None, :, :]) @ inv
        d = (d - np.round(d)) @ cell  # minimum image; fine for the near-cubic cells used
        if np.sqrt((d ** 2).sum(-1)).min() > MIN_INTERMOLECULAR:
            return mol
    raise RuntimeError(f"could not place a molecule after {tries} tries; use fewer molecules "
                       "or a lower density")


def _molecule(rng) -> np.ndarray:
    """O, H, H around the oxygen, bonds and angle jittered so the labels vary."""
    b1, b2 = OH_BOND + rng.normal(0.0, 0.03, 2)
    ang = HOH_ANGLE + rng.normal(0.0, 0.05)
    return np.array([[0.0, 0.0, 0.0], [b1, 0.0, 0.0], [b2 * math.cos(ang), b2 * math.sin(ang), 0]])


def _rotation(rng) -> np.ndarray:
    """A uniformly random rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ---------------------------------------------------------------- labels

def morse_labels(coord, cell, atype, pbc: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces [natoms, 3] and virial [3, 3] of the smooth Morse pair potential.

    E = 1/2 sum_{i, j, S} phi(|r_j + S - r_i|) over periodic images S within MORSE_RC,
    phi = D[(1 - exp(-a(r - r0)))^2 - 1] * sw(r), sw a C2 switch from 1 at MORSE_RS to 0
    at MORSE_RC. F_i = sum phi'(r) d/r with d = r_j + S - r_i; under the strain
    r -> r(1 + eps) every d -> d(1 + eps), so W_ab = -dE/deps_ab = -1/2 sum phi' d_a d_b / r.
    """
    coord, cell = np.asarray(coord, float), np.asarray(cell, float)
    shifts = _image_shifts(cell, MORSE_RC) if pbc else np.zeros((1, 3))
    d = coord[None, :, None, :] + shifts[None, None] - coord[:, None, None, :]  # [n, n, ns, 3]
    r = np.sqrt((d ** 2).sum(-1))
    self_pair = np.zeros(r.shape, bool)
    self_pair[np.arange(len(coord)), np.arange(len(coord)), np.argmin((shifts ** 2).sum(1))] = True
    use = (r < MORSE_RC) & ~self_pair
    r_safe = np.where(use, r, MORSE_RC)
    D, a, r0 = np.moveaxis(MORSE[atype[:, None], atype[None, :]], -1, 0)
    D, a, r0 = (x[:, :, None] for x in (D, a, r0))
    ex = np.exp(-a * (r_safe - r0))
    m, dm = D * ((1 - ex) ** 2 - 1), 2 * D * a * (1 - ex) * ex
    sw, dsw = _switch(r_safe)
    phi = np.where(use, m * sw, 0.0)
    dphi = np.where(use, dm * sw + m * dsw, 0.0)
    g = (dphi / r_safe)[..., None] * d  # phi'(r) d / r
    energy = 0.5 * phi.sum()
    force = g.sum(axis=(1, 2))
    virial = -0.5 * np.einsum("ijsa,ijsb->ab", g, d)
    return float(energy), force, virial


def _switch(r):
    """sw = 1 - 10x^3 + 15x^4 - 6x^5, x = (r - RS)/(RC - RS) clipped to [0, 1]; and d sw/dr."""
    width = MORSE_RC - MORSE_RS
    x = np.clip((r - MORSE_RS) / width, 0.0, 1.0)
    sw = 1 - x ** 3 * (10 - 15 * x + 6 * x ** 2)
    dsw = -30 * x ** 2 * (1 - x) ** 2 / width
    return sw, dsw


def _image_shifts(cell, rc) -> np.ndarray:
    """Lattice translations n @ cell that can bring an image within rc of any atom."""
    vol = abs(np.linalg.det(cell))
    heights = vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = [math.ceil(rc / h) + 1 for h in heights]  # +1: atoms need not be wrapped
    ns = np.array(list(itertools.product(*(range(-n, n + 1) for n in reach))), float)
    return ns @ cell


def emt_labels(coord, cell, atype, pbc: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy, forces and virial (= -V * stress) from ASE's EMT (which has H and O)."""
    from ase import Atoms
    from ase.calculators.emt import EMT

    atoms = Atoms(numbers=np.array([8, 1])[atype], positions=coord, cell=cell, pbc=pbc)
    atoms.calc = EMT()
    energy = atoms.get_potential_energy()
    force = atoms.get_forces()
    if pbc:
        virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
    else:  # W_ab = -sum_k dE/dr_ka r_kb = sum_k f_ka r_kb
        virial = np.einsum("ka,kb->ab", force, coord)
    return float(energy), force, virial


def labeler(calculator: str = "morse"):
    """(name, function) for "morse" (built in: the same data on every machine, the default)
    or "emt" (ASE's, where ASE is installed)."""
    funcs = {"emt": emt_labels, "morse": morse_labels}
    if calculator not in funcs:
        raise ValueError(f"calculator {calculator!r}: expected morse or emt")
    return calculator, funcs[calculator]


def finite_difference_error(label, coord, cell, atype, pbc: bool = True,
                            h: float = 1e-5, ncheck: int = 6) -> tuple[float, float]:
    """Largest |F - (-dE/dx)| over ncheck coordinates and |W - (-dE/deps)| over the 9
    strain components, by central differences. The oracle for both labelers."""
    coord, cell = np.asarray(coord, float), np.asarray(cell, float)
    _, force, virial = label(coord, cell, atype, pbc)
    f_err = 0.0
    for flat in np.linspace(0, coord.size - 1, ncheck).astype(int):
        i, a = divmod(int(flat), 3)
        plus, minus = coord.copy(), coord.copy()
        plus[i, a] += h
        minus[i, a] -= h
        de = (label(plus, cell, atype, pbc)[0] - label(minus, cell, atype, pbc)[0]) / (2 * h)
        f_err = max(f_err, abs(force[i, a] + de))
    w_err = 0.0  # r -> r(1 + eps): dE/deps_ab = sum_k dE/dr_kb r_ka = -W_ba
    for a, b in itertools.product(range(3), range(3)):
        eps = np.zeros((3, 3))
        eps[a, b] = h
        e_p = label(coord @ (np.eye(3) + eps), cell @ (np.eye(3) + eps), atype, pbc)[0]
        e_m = label(coord @ (np.eye(3) - eps), cell @ (np.eye(3) - eps), atype, pbc)[0]
        w_err = max(w_err, abs(virial[b, a] + (e_p - e_m) / (2 * h)))
    return f_err, w_err


# ---------------------------------------------------------------- writing

def make_frames(nmol: int, nframes: int, rng, label, pbc: bool = True, tilt: float = 0.0):
    """nframes labeled configurations of nmol molecules (one atom order for all)."""
    frames = [water_frame(nmol, rng, tilt=tilt) for _ in range(nframes)]
    atype = frames[0][0]
    out = {"coord": [], "box": [], "energy": [], "force": [], "virial": []}
    for _, coord, cell in frames:
        energy, force, virial = label(coord, cell, atype, pbc)
        for key, val in zip(out, (coord, cell, energy, force, virial)):
            out[key].append(np.reshape(val, -1))
    arrays = {k: np.array(v) for k, v in out.items()}
    arrays["energy"] = arrays["energy"].reshape(nframes)  # energy.npy is (nf,) by convention
    return atype, arrays


def write_system(path, atype, type_map, arrays: dict, nsets: int = 1, pbc: bool = True):
    """A DeePMD npy system: type.raw, type_map.raw, (nopbc), set.000 ... split evenly."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "type.raw").write_text("\n".join(map(str, atype)) + "\n")
    (path / "type_map.raw").write_text("\n".join(type_map) + "\n")
    if not pbc:
        (path / "nopbc").touch()
    nf = len(arrays["coord"])
    for iset, frames in enumerate(np.array_split(np.arange(nf), nsets)):
        set_dir = path / f"set.{iset:03d}"
        set_dir.mkdir(exist_ok=True)
        for key, arr in arrays.items():
            if key != "box" or pbc:
                np.save(set_dir / f"{key}.npy", arr[frames])
    return path


def make_dataset(outdir, nsystems: int = 2, nframes: int = 20, nvalid: int = 5,
                 seed: int = 0, calculator: str = "morse", nsets: int = 1,
                 tilt: float = 0.0) -> dict:
    """train/water_NNN (8, 12, 16, ... molecules, NNN atoms) and valid/water_024.

    Returns {"train": [paths], "valid": [paths], "calculator": name}; the settings, with
    paths relative to outdir, go to outdir/generator.json.
    """
    name, label = labeler(calculator)
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    made = {"train": [], "valid": [], "calculator": name}
    plan = [("train", 8 + 4 * i, nframes) for i in range(nsystems)]
    plan += [("valid", 8, nvalid)] if nvalid > 0 else []
    for part, nmol, nf in plan:
        atype, arrays = make_frames(nmol, nf, rng, label, tilt=tilt)
        path = outdir / part / f"water_{3 * nmol:03d}"
        write_system(path, atype, TYPE_MAP, arrays, nsets=min(nsets, nf))
        made[part].append(str(path))
        log.info("wrote %s: %d frames, %d atoms, labels from %s", path, nf, 3 * nmol, name)
    record = {part: [str(Path(p).relative_to(outdir)) for p in made[part]]
              for part in ("train", "valid")}
    record.update(calculator=name, seed=seed, nframes=nframes, nvalid=nvalid, nsets=nsets,
                  tilt=tilt)
    (outdir / "generator.json").write_text(json.dumps(record, indent=1) + "\n")
    return made
