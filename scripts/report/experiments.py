"""What the report runs: its experiments, each a model's recipe with overrides, run once per seed, and the groups of
them that its tables and figures show."""
from mnistlab.recipes import EPOCHS, RECIPES, data_of, resolve_recipe, run_name

# The report: each experiment is run once per seed, for EPOCHS epochs, on top of its model's recipe.
SEEDS = (0, 1, 2)
TRAIN_SIZES = (1_000, 3_000, 10_000, 30_000)
MODEL_LABELS = ["LeNet5", "CustomMLP", "LeNet5_Regularized"]
ABLATION_LABELS = ["LeNet5", "weight decay only", "batch norm only", "dropout only", "augmentation only",
                   "all four at LeNet5's learning rate", "LeNet5_Regularized"]


def on_fashion(label):
    """The experiment's label on Fashion-MNIST."""
    return f"{label}, Fashion-MNIST"


# The models and the ablation again on Fashion-MNIST, every recipe as it is: chosen on MNIST's validation split.
FASHION_MODEL_LABELS = [on_fashion(label) for label in MODEL_LABELS]
FASHION_ABLATION_LABELS = [on_fashion(label) for label in ABLATION_LABELS]


def _experiments():
    regularized, lenet = RECIPES["lenet5_regularized"], RECIPES["lenet5"]
    # label -> (model, overrides of its recipe, tag). Each single technique is added to LeNet5's recipe, learning
    # rate included, with its setting from LeNet5_Regularized's recipe.
    experiments = {
        "LeNet5": ("lenet5", {}, None),
        "CustomMLP": ("custom_mlp", {}, None),
        "LeNet5_Regularized": ("lenet5_regularized", {}, None),
        "weight decay only": ("lenet5", {"weight_decay": regularized["weight_decay"]}, "wd"),
        "batch norm only": ("lenet5_regularized", {"lr": lenet["lr"], "augment": 0.0, "dropout": 0.0,
                                                   "weight_decay": 0.0}, "bn"),
        "dropout only": ("lenet5_regularized", {"lr": lenet["lr"], "batch_norm": False, "augment": 0.0,
                                                "weight_decay": 0.0}, "dropout"),
        "augmentation only": ("lenet5", {"augment": regularized["augment"]}, "augment"),
        "all four at LeNet5's learning rate": ("lenet5_regularized", {"lr": lenet["lr"]}, "lenet5lr"),
        "CustomMLP without augmentation": ("custom_mlp", {"augment": 0.0}, "noaug"),
    }
    # Sample efficiency: stratified subsets of the training set, each trained for the same number of optimizer
    # steps as the full set; the full set's runs are "LeNet5" and "CustomMLP without augmentation".
    for size in TRAIN_SIZES:
        experiments[f"LeNet5, {size:,} images"] = ("lenet5", {"train_size": size}, f"n{size}")
        experiments[f"CustomMLP without augmentation, {size:,} images"] = (
            "custom_mlp", {"augment": 0.0, "train_size": size}, f"noaug_n{size}")
    for label in dict.fromkeys(MODEL_LABELS + ABLATION_LABELS):
        model, overrides, tag = experiments[label]
        experiments[on_fashion(label)] = (model, {**overrides, "dataset": "fashion-mnist"}, tag)
    return experiments


EXPERIMENTS = _experiments()


def experiment_recipe(label, seed):
    model, overrides, _ = EXPERIMENTS[label]
    return resolve_recipe(model, overrides, epochs=EPOCHS, seed=seed, limit=None, train_size=None,
                          validation=False, amp=False)


def experiment_run_name(label, seed):
    model, _, tag = EXPERIMENTS[label]
    return run_name(model, tag, seed, dataset=experiment_data(label))


def experiment_data(label):
    """The dataset an experiment trains and scores on, as its recipe says."""
    return data_of(experiment_recipe(label, SEEDS[0]))

# The runs whose robustness the report draws, and the two models of the sample-efficiency experiment.
ROBUSTNESS_LABELS = ["LeNet5", "augmentation only", "CustomMLP without augmentation", "CustomMLP",
                     "LeNet5_Regularized"]
ROBUSTNESS_NAMES = {"augmentation only": "LeNet5 with augmentation", "CustomMLP": "CustomMLP with augmentation"}
SAMPLE_EFFICIENCY = {"LeNet5": "LeNet5", "CustomMLP without augmentation": "CustomMLP without augmentation"}
ROBUSTNESS_SHIFTS, ROBUSTNESS_ROTATIONS = (1, 2, 3, 4, 6), (10, 20, 30)
# The robustness differences that the prose draws on, first minus second.
ROBUSTNESS_PAIRS = [("LeNet5", "CustomMLP without augmentation"), ("CustomMLP", "LeNet5"),
                    ("augmentation only", "CustomMLP"), ("LeNet5_Regularized", "augmentation only")]
LECUN_1998_ERROR = 0.95  # % test error of LeNet-5 without distortions, LeCun et al. (1998)


def sample_efficiency_labels():
    """The training-set sizes, the full set last, and each model's experiments at those sizes."""
    return [*TRAIN_SIZES, 60_000], {name: [f"{label}, {size:,} images" for size in TRAIN_SIZES] + [label]
                                    for label, name in SAMPLE_EFFICIENCY.items()}
