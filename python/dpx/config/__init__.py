"""Reading a dpx / DeePMD-kit input file into one typed Config (single or multi-task)."""
from dpx.config.descriptor import DESCRIPTORS, DescriptorConfig, SeAConfig
from dpx.config.fitting import FITTINGS, EnergyFittingConfig
from dpx.config.input import (
    BranchDataConfig,
    DataConfig,
    LearningRateConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from dpx.config.load import Branch, Config, SharedLink, load_input, parse_input
from dpx.config.schema import ConfigError

__all__ = ["DESCRIPTORS", "FITTINGS", "Branch", "BranchDataConfig", "Config", "ConfigError",
           "DataConfig", "DescriptorConfig", "EnergyFittingConfig", "LearningRateConfig",
           "LossConfig", "ModelConfig", "OptimizerConfig", "SeAConfig",
           "SharedLink", "TrainingConfig", "load_input", "parse_input"]
