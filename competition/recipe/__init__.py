"""Recipes: one YAML file declares a whole experiment; validated strictly, every field defaulted.

Errors name the key and echo the value (``recipe.train.batch_size: expected an integer, got 'big'``), and an
unknown key is rejected with a suggestion, so a typo never silently falls back to a default. Every number has
its range in the schema; the YAML is read strictly (a key given twice, aliases that expand past
MAX_YAML_VALUES values, or a file above MAX_RECIPE_BYTES are errors) and an error echoes at most a short,
cut-down form of the value it names. What can be checked without the contest is checked when the recipe is
validated (the augment pipeline is run once on an image of the recipe's size and channels); what needs the
contest (its classes, its files' names) is `check_with_contest`, run by `train` before the run folder is made
and by `doctor`.

The package, in the order a recipe is used: `schema` (the sections and `Recipe`), `loading` (YAML, `--set`,
errors as one line), `checks` (what needs the contest).
"""

from competition.recipe.checks import check_with_contest
from competition.recipe.loading import apply_override, format_error, load_recipe, parse_value
from competition.recipe.schema import (LAYOUT_KEYS, MAX_IMAGE_SIZE, OPTIMIZERS, BalanceConfig, CVConfig, DataConfig,
                                       EmbeddingConfig, HeadConfig, MixConfig, ModelConfig, PhaseConfig,
                                       PseudoLabelConfig, Recipe, ReduceLRConfig, ResourcesConfig, Section,
                                       TrainConfig, shown)

__all__ = ["LAYOUT_KEYS", "MAX_IMAGE_SIZE", "OPTIMIZERS", "BalanceConfig", "CVConfig", "DataConfig", "EmbeddingConfig",
           "HeadConfig", "MixConfig", "ModelConfig", "PhaseConfig", "PseudoLabelConfig", "Recipe", "ReduceLRConfig",
           "ResourcesConfig", "Section", "TrainConfig", "apply_override", "check_with_contest", "format_error",
           "load_recipe", "parse_value", "shown"]
