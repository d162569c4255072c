"""Reading a dpx / DeePMD-kit input file into one typed Config (single or multi-task)."""
from dpx.config.input import (
                              BranchData,
                              DataConfig,
                              DescriptorConfig,
                              FittingConfig,
                              LearningRateConfig,
                              LossConfig,
                              ModelConfig,
                              OptimizerConfig,
                              TrainingConfig,
)
from dpx.config.load import Branch, Config, SharedLink, load_input, parse_input
from dpx.config.schema import ConfigError

__all__ = ["Branch", "BranchData", "Config", "ConfigError", "DataConfig", "DescriptorConfig",
           "FittingConfig", "LearningRateConfig", "LossConfig", "ModelConfig", "OptimizerConfig",
           "SharedLink", "TrainingConfig", "load_input", "parse_input"]
