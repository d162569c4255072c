"""An ASE calculator for a dpx model: a checkpoint branch or a frozen (TorchScript) file.

    from dpx.calculator import DPX
    atoms.calc = DPX("model.ckpt.pt", head="water_1")   # or DPX("frozen.pth")

Frame and atomic parameters (numb_fparam, numb_aparam) come from atoms.info["fparam"]
and atoms.info["aparam"], as with DeePMD-kit's calculator. Energies in eV, forces in eV/A,
stress in eV/A^3 (ASE's sign: -virial / volume, Voigt order xx yy zz yz xz xy). Periodic
cells need pbc on all three axes; a cell-less system (pbc all False) has no stress.
"""
from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from dpx.io import load_model


class DPX(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model: str, head: str | None = None, **kwargs):
        """head: the branch of a multi-task checkpoint (DeePMD-kit's calculator names it so)."""
        super().__init__(**kwargs)
        self.model = load_model(model, head)[0]
        self.type_map = list(self.model.type_map)  # EnergyModel and FrozenModel both have it

    def _atype(self, atoms) -> torch.Tensor:
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self.type_map))
        if unknown:
            raise ValueError(f"elements {unknown} are not in the model's type_map "
                             f"{self.type_map}")
        return torch.tensor([[self.type_map.index(s) for s in symbols]], dtype=torch.long)

    def _box(self, atoms) -> torch.Tensor | None:
        if not atoms.pbc.any():
            return None
        if not atoms.pbc.all():
            raise ValueError(f"pbc {atoms.pbc.tolist()}: dpx models are periodic in all three "
                             f"directions or in none")
        return torch.tensor(atoms.cell.array.reshape(1, 9), dtype=torch.float64)

    def _parameters(self, atoms) -> dict:
        """fparam [1, k] and aparam [1, natoms, k] from atoms.info["fparam" / "aparam"], where
        DeePMD-kit's calculator takes them."""
        out = {}
        for name, width in (("fparam", self.model.get_dim_fparam()),
                            ("aparam", self.model.get_dim_aparam())):
            value = atoms.info.get(name)
            if width == 0:
                continue
            if value is None:
                if name == "fparam" and self.model.has_default_fparam():
                    continue
                raise ValueError(f'the model takes numb_{name} {width}: give atoms.info'
                                 f'["{name}"]')
            per = len(atoms) * width if name == "aparam" else width
            value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
            if value.numel() != per:
                raise ValueError(f'atoms.info["{name}"] has {value.numel()} values, the model '
                                 f'takes {per} (numb_{name} {width})')
            out[name] = value.reshape(1, -1, width) if name == "aparam" else value.reshape(1, -1)
        return out

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        coord = torch.tensor(self.atoms.positions.reshape(1, -1, 3), dtype=torch.float64)
        box = self._box(self.atoms)
        out = self.model(coord, self._atype(self.atoms), box, **self._parameters(self.atoms))
        energy = float(out["energy"].detach().reshape(()))
        self.results = {"energy": energy, "free_energy": energy,
                        "energies": out["atom_energy"].detach().reshape(-1).double().numpy(),
                        "forces": out["force"].detach().reshape(-1, 3).double().numpy()}
        if box is not None:
            virial = out["virial"].detach().reshape(3, 3).double().numpy()
            stress = -0.5 * (virial + virial.T) / self.atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a periodic cell (pbc all True)")
