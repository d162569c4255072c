"""Reading a dpx / DeePMD-kit input file into one typed Config (single or multi-task)."""
from dpx.config.descriptor import (
    DescriptorConfig,
    DPA1Config,
    SeAConfig,
    SeAttenV2Config,
    SeRConfig,
)
from dpx.config.fitting import EnergyFittingConfig, FittingConfig
from dpx.config.input import (
    BranchDataConfig,
    DataConfig,
    EnergyLossConfig,
    LearningRateConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from dpx.config.load import Branch, Config, SharedLink, load_input, parse_input
from dpx.config.schema import ConfigError

__all__ = ["Branch", "BranchDataConfig", "Config", "ConfigError", "DPA1Config", "DataConfig",
           "DescriptorConfig", "EnergyFittingConfig", "EnergyLossConfig", "FittingConfig",
           "LearningRateConfig", "LossConfig", "ModelConfig", "OptimizerConfig", "SeAConfig",
           "SeAttenV2Config", "SeRConfig", "SharedLink", "TrainingConfig", "load_input",
           "parse_input"]
