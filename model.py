"""The three MNIST classifiers and their parameter counts. Each maps (N, 1, 28, 28) to logits (N, 10)."""
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, on 28x28 inputs padded by 2.

    Parameters, layer by layer:
        conv1  1*6*5*5 + 6       =    156
        conv2  6*16*5*5 + 16     =  2,416
        fc1    16*5*5*120 + 120  = 48,120
        fc2    120*84 + 84       = 10,164
        fc3    84*10 + 10        =    850
        total                    = 61,706
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        # ReLU and max-pool commute (ReLU is monotone); pooling first runs ReLU on 4x fewer values.
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (N, 6, 14, 14)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (N, 16, 5, 5)
        x = F.relu(self.fc1(x.flatten(1)))          # (N, 120)
        x = F.relu(self.fc2(x))                     # (N, 84)
        return self.fc3(x)                          # (N, 10)


class CustomMLP(nn.Module):
    """A multilayer perceptron on the flattened 28x28 image, in LeNet-5's parameter budget.

    Nearly all of the budget goes into the first layer (784 inputs per unit). hidden gives the widths
    of the hidden layers; scripts/tune.py chose the default among shapes within 1% of LeNet5's size.

    Parameters, layer by layer (the default widths):
        fc1    784*75 + 75       = 58,875
        fc2    75*32 + 32        =  2,432
        fc3    32*10 + 10        =    330
        total                    = 61,637
    """

    def __init__(self, hidden=(75, 32)):
        super().__init__()
        widths = [28 * 28, *hidden, 10]
        # fc1, fc2, ...: the names the parameter tables and the docstring above use.
        for i, (n_in, n_out) in enumerate(zip(widths, widths[1:]), 1):
            self.add_module(f"fc{i}", nn.Linear(n_in, n_out))

    def forward(self, x):
        *hidden, last = self.children()
        x = x.flatten(1)          # (N, 784)
        for layer in hidden:
            x = F.relu(layer(x))  # (N, width of the layer)
        return last(x)            # (N, 10)


class LeNet5_Regularized(nn.Module):
    """LeNet-5 with batch norm after every hidden layer and dropout before the last two.

    Its training recipe adds data augmentation and weight decay. batch_norm=False and dropout=0
    switch those parts off, for the ablation. A layer followed by batch norm has no bias: the
    norm's shift does that job.

    Parameters, layer by layer (batch_norm=True):
        conv1  1*6*5*5           =    150
        bn1    2*6               =     12
        conv2  6*16*5*5          =  2,400
        bn2    2*16              =     32
        fc1    16*5*5*120        = 48,000
        bn3    2*120             =    240
        fc2    120*84            = 10,080
        bn4    2*84              =    168
        fc3    84*10 + 10        =    850
        total                    = 61,932
    """

    def __init__(self, batch_norm=True, dropout=0.1):
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2, bias=bias)
        self.bn1 = nn.BatchNorm2d(6) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(6, 16, 5, bias=bias)
        self.bn2 = nn.BatchNorm2d(16) if batch_norm else nn.Identity()
        self.fc1 = nn.Linear(16 * 5 * 5, 120, bias=bias)
        self.bn3 = nn.BatchNorm1d(120) if batch_norm else nn.Identity()
        self.fc2 = nn.Linear(120, 84, bias=bias)
        self.bn4 = nn.BatchNorm1d(84) if batch_norm else nn.Identity()
        self.fc3 = nn.Linear(84, 10)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))  # (N, 6, 14, 14)
        x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))  # (N, 16, 5, 5)
        x = F.relu(self.bn3(self.fc1(x.flatten(1))))          # (N, 120)
        x = F.relu(self.bn4(self.fc2(self.dropout(x))))       # (N, 84)
        return self.fc3(self.dropout(x))                      # (N, 10)


MODELS = {"lenet5": LeNet5, "custom_mlp": CustomMLP, "lenet5_regularized": LeNet5_Regularized}


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def parameter_table(model):
    """Markdown table of each layer's parameters: layer, shapes, count and running total."""
    rows, total = [], 0
    for name, module in model.named_modules():
        params = list(module.named_parameters(recurse=False))
        if not params:
            continue
        count = sum(p.numel() for _, p in params)
        total += count
        shapes = ", ".join(f"{pname} {tuple(p.shape)}" for pname, p in params)
        rows.append((name, shapes, f"{count:,}", f"{total:,}"))
    header = ("layer", "shape", "params", "total")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]

    def line(cells):  # text columns left-aligned, numbers right-aligned
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])
