"""The documents the report writes into (DOCUMENTS), and their generated sections, each between
<!-- report:NAME --> and <!-- /report:NAME -->: finding, rendering and replacing them."""
import re

from . import appendices, committed, readme
from mnistlab.errors import UsageError

# Each document the report writes into, and its generated sections. README.md is the report; docs/ holds the
# manuals and the long appendices.
DOCUMENTS = {
    "README.md": ("headline", "results", "quickstart", "models", "recipes", "versus", "robustness",
                  "sample_efficiency", "ablation", "verdicts", "fashion", "errors"),
    "docs/usage.md": ("data",),
    "docs/predict.md": ("predict",),
    "docs/demo.md": ("demo",),
    "docs/sweeps.md": ("sweep",),
    "docs/statistics.md": ("significance",),
    "docs/tuning.md": ("tuning_space", "tuning", "selection", "tuning_fast"),
    "docs/speed.md": ("time_to_accuracy", "speed"),
    "docs/reproducing.md": ("reproduce",),
    "docs/fashion.md": ("fashion_ablation",),
    "docs/defences.md": ("defences",),
}
# Each section's renderer: README.md's are readme.py's, those of docs/ appendices.py's.
SECTIONS = {"headline": readme.section_headline, "results": readme.section_results,
            "quickstart": readme.section_quickstart, "models": readme.section_models,
            "recipes": readme.section_recipes, "versus": readme.section_versus,
            "robustness": readme.section_robustness, "sample_efficiency": readme.section_sample_efficiency,
            "ablation": readme.section_ablation, "verdicts": readme.section_verdicts,
            "fashion": readme.section_fashion, "fashion_ablation": appendices.section_fashion_ablation,
            "errors": readme.section_errors, "data": appendices.section_data,
            "predict": appendices.section_predict, "demo": appendices.section_demo,
            "sweep": appendices.section_sweep, "significance": appendices.section_significance,
            "tuning_space": appendices.section_tuning_space, "tuning": appendices.section_tuning,
            "selection": appendices.section_selection, "tuning_fast": appendices.section_tuning_fast,
            "time_to_accuracy": appendices.section_time_to_accuracy, "speed": appendices.section_speed,
            "reproduce": appendices.section_reproduce, "defences": appendices.section_defences}


def marker_pattern(name):
    return re.compile(rf"(<!-- report:{name} -->)(.*?)(<!-- /report:{name} -->)", re.DOTALL)


def rendered(document, name):
    """A section's text as it stands in document: its figures' paths from the document's own folder."""
    up = "../" * document.count("/")
    return re.sub(r"\]\((?=plots/)", f"]({up}", SECTIONS[name]())


def document_sections(document, text):
    """The generated sections as they stand in a document's text; None for a missing one."""
    sections = {}
    for name in DOCUMENTS[document]:
        match = marker_pattern(name).search(text)
        sections[name] = match.group(2).strip("\n") if match else None
    return sections


def render_document(document, text):
    for name in DOCUMENTS[document]:
        pattern = marker_pattern(name)
        if not pattern.search(text):
            raise UsageError(f"{document} has no <!-- report:{name} --> section; restore it with git checkout -- "
                             f"{document}")
        content = rendered(document, name)
        text = pattern.sub(lambda m: f"{m.group(1)}\n{content}\n{m.group(3)}", text)
    return text


def read_document(name):
    try:
        return (committed.PAGES / name).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{name} cannot be read ({getattr(e, 'strerror', None) or e}); restore it with git checkout "
                         f"-- {name}") from None
