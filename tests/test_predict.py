"""predict.py: MNIST-style preprocessing of users' images, checked step by step on images drawn here, and the
command line with good and bad input."""
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import dataset
import engine
import files
import predict
import runs
from conftest import start


def drawing(digit, size=(300, 400), offset=(0, 0), scale=1.0, ink=20, paper=235, mode="L", gradient=0.0):
    """A thick "1" or a ring "0", dark on light, drawn with PIL; optionally moved, scaled, or lit unevenly."""
    image = Image.new(mode, size, paper if mode == "L" else (paper,) * 3)
    draw = ImageDraw.Draw(image)
    cx, cy = size[0] / 2 + offset[0], size[1] / 2 + offset[1]
    if digit == 1:
        draw.line([(cx, cy - 130 * scale), (cx, cy + 130 * scale)], fill=ink if mode == "L" else (ink,) * 3,
                  width=round(26 * scale))
    else:
        draw.ellipse([cx - 75 * scale, cy - 120 * scale, cx + 75 * scale, cy + 120 * scale],
                     outline=ink if mode == "L" else (ink,) * 3, width=round(26 * scale))
    if gradient:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        ramp = np.linspace(-gradient / 2, gradient / 2, size[0])[None, :] * 255
        image = Image.fromarray(np.clip(pixels + ramp, 0, 255).astype(np.uint8))
    return image


def similar(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = dataset.read_split(train=False)
    return images.numpy(), labels


def test_the_mnist_constants_are_measured_on_the_training_set():
    digits = dataset.read_split(train=True)[0].double() / 255
    mass = digits.sum((1, 2))
    rows = (digits.sum(2) * torch.arange(28)).sum(1) / mass
    cols = (digits.sum(1) * torch.arange(28)).sum(1) / mass
    assert rows.mean().item() == pytest.approx(predict.MASS_CENTRE, abs=0.05)
    assert cols.mean().item() == pytest.approx(predict.MASS_CENTRE, abs=0.05)
    heights = (digits > 0).any(2).sum(1)
    assert ((digits > 0.5).sum((1, 2)) / heights).mean().item() == pytest.approx(predict.STROKE, abs=0.1)


def test_transparency_is_composited_onto_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((5, 5), (0, 0, 0, 255))
    grey = np.asarray(predict.to_grey(image))
    assert grey[5, 5] == 0 and (grey == 255).sum() == 99
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert (np.asarray(predict.to_grey(palette)) == 255).all()


def test_dark_ink_on_light_paper_comes_out_white_on_black():
    field = predict.mnist_like(drawing(1))
    assert field.shape == (28, 28) and field.dtype == np.float32
    assert field.max() == pytest.approx(1.0) and field.min() == 0.0
    assert field[:, :4].max() == 0 and field[:, -4:].max() == 0  # the paper around the stroke is blank


def test_the_ink_is_scaled_to_20_pixels_and_centred_by_mass():
    for digit in (0, 1):
        field = predict.mnist_like(drawing(digit, scale=0.6))
        rows = np.nonzero(field.max(1) > 0.3)[0]
        assert 19 <= rows.max() - rows.min() + 1 <= 21
        mass = field.sum()
        centre = ((np.arange(28)[:, None] * field).sum() / mass, (np.arange(28)[None, :] * field).sum() / mass)
        assert centre == pytest.approx((predict.MASS_CENTRE, predict.MASS_CENTRE), abs=0.5)


@pytest.mark.parametrize("digit", [0, 1])
@pytest.mark.parametrize("change", ["shifted", "smaller", "inverted", "gradient", "rgb"])
def test_the_same_digit_changed_gives_nearly_the_same_field(digit, change):
    reference = predict.mnist_like(drawing(digit))
    changed = {
        "shifted": lambda: drawing(digit, size=(500, 420), offset=(120, -20)),
        "smaller": lambda: drawing(digit, scale=0.4),
        "inverted": lambda: drawing(digit, ink=235, paper=20),
        "gradient": lambda: drawing(digit, gradient=0.45),
        "rgb": lambda: drawing(digit, mode="RGB"),
    }[change]()
    field = predict.mnist_like(changed)
    assert similar(field, reference) > 0.9
    assert np.abs(field - reference).mean() < 0.05


def test_a_thin_pen_stroke_is_thickened_towards_mnists():
    thin = predict.mnist_like(drawing(0, scale=1.0).resize((300, 400)))
    pen = Image.new("L", (300, 400), 235)
    ImageDraw.Draw(pen).ellipse([75, 80, 225, 320], outline=20, width=3)
    field = predict.mnist_like(pen)
    assert (field > 0.5).sum() > 0.6 * (thin > 0.5).sum()


def test_mnist_digits_come_through_nearly_unchanged(mnist_test):
    images, _ = mnist_test
    diffs = [np.abs(predict.mnist_like(Image.fromarray(image)) - image / 255).mean() for image in images[:300]]
    assert np.mean(diffs) < 0.005 and max(diffs) < 0.1


@pytest.mark.parametrize("image", ["uniform", "noise"])
def test_an_image_without_ink_is_blank(image):
    if image == "uniform":
        blank = Image.new("L", (120, 90), 200)
    else:
        blank = Image.fromarray(np.random.default_rng(0).normal(200, 6, (90, 120)).clip(0, 255).astype(np.uint8))
    with pytest.raises(predict.Blank):
        predict.mnist_like(blank)


def test_mnist_pngs_read_from_files_get_the_same_predictions_as_the_tensors(trained_runs, mnist_test, tmp_path):
    images, labels = mnist_test
    count = 500
    for i in range(count):
        Image.fromarray(images[i]).save(tmp_path / f"{i:04d}.png")
    model, _ = runs.load_model(trained_runs / "checkpoints" / "lenet5_seed0.pt", torch.device("cpu"))
    direct = engine.probabilities(model, dataset.load_splits()[2][:count]).argmax(1)
    fields = [predict.read(tmp_path / f"{i:04d}.png")[1] for i in range(count)]
    from_files = engine.probabilities(model, predict.normalize(fields)).argmax(1)
    assert (from_files == direct).double().mean().item() >= 0.99
    assert (from_files == labels[:count]).double().mean().item() > 0.95


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    drawing(1).save(folder / "one.png")
    drawing(0, mode="RGB").save(folder / "zero.jpg", quality=80)
    Image.new("L", (100, 100), 255).save(folder / "blank.png")
    (folder / "fake.png").write_text("not an image")
    png = (folder / "one.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[:len(png) // 2])
    (folder / "empty").mkdir()
    (folder / "no-images").mkdir()
    (folder / "no-images" / "notes.txt").write_text("")
    return folder


@pytest.fixture
def run_predict(capsys):
    """predict.py in-process: run_predict(*argv) returns (exit status, stdout, stderr)."""
    def run(*argv):
        status = predict.main(predict.get_args_parser().parse_args([str(a) for a in argv]))
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_predict_runs_as_a_program(trained_runs, images):
    process = start("predict.py", images / "one.png", "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and out.startswith(f"{images / 'one.png'}: 1 (") and "Traceback" not in err


def test_good_images_are_read_and_blank_ones_reported(trained_runs, images, tmp_path, run_predict):
    checkpoint = trained_runs / "checkpoints" / "lenet5_seed0.pt"
    status, out, err = run_predict(images / "one.png", images / "zero.jpg", images / "blank.png", "--checkpoint",
                                   checkpoint, "--top", "3", "--preview", tmp_path / "preview.png")
    assert status == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].startswith(f"{images / 'one.png'}: 1 (") and lines[0].count("%") == 3
    assert lines[1].startswith(f"{images / 'zero.jpg'}: 0 (")
    assert lines[2] == f"{images / 'blank.png'}: blank, no ink found"
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_output_parses_and_holds_the_fields(trained_runs, images, run_predict):
    status, out, _ = run_predict(images / "one.png", images / "blank.png", images / "fake.png", "--json", "--top",
                                 "2", "--checkpoint", trained_runs / "checkpoints" / "custom_mlp_seed0.pt")
    assert status == 1
    one, blank, fake = json.loads(out)
    assert one["file"] == str(images / "one.png") and one["digit"] == 1
    assert [entry["digit"] for entry in one["top"]][0] == 1 and len(one["top"]) == 2
    assert len(one["probabilities"]) == 10 and sum(one["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert one["probability"] == max(one["probabilities"])
    assert blank == {"file": str(images / "blank.png"), "blank": True}
    assert fake["file"] == str(images / "fake.png") and "not an image" in fake["error"]


def test_bad_inputs_are_reported_and_the_good_ones_still_read(trained_runs, images, run_predict):
    status, out, err = run_predict(images, images / "empty", images / "no-images", images / "missing.png",
                                   "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 1 and "Traceback" not in err
    problems = {line.split(": ")[2]: line for line in err.splitlines() if line.startswith("predict.py: error:")}
    assert set(problems) == {str(images / name) for name in ("fake.png", "truncated.png", "empty", "no-images",
                                                              "missing.png")}
    assert "not an image" in problems[str(images / "fake.png")]
    assert "truncated" in problems[str(images / "truncated.png")]
    assert "an empty folder" in problems[str(images / "empty")]
    assert "a folder with no images" in problems[str(images / "no-images")]
    assert "no such file or folder" in problems[str(images / "missing.png")]
    assert f"{images / 'one.png'}: 1 (" in out and f"{images / 'zero.jpg'}: 0 (" in out


@pytest.mark.parametrize("case", ["no checkpoint at all", "missing", "not a checkpoint", "other model"])
def test_a_missing_or_incompatible_checkpoint_is_exit_2(case, trained_runs, images, tmp_path, monkeypatch,
                                                        run_predict):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    argv = {"no checkpoint at all": [], "missing": ["--checkpoint", tmp_path / "none.pt"],
            "not a checkpoint": ["--checkpoint", tmp_path / "junk.pt"],
            "other model": ["--model", "lenet5_regularized", "--checkpoint",
                            trained_runs / "checkpoints" / "lenet5_seed0.pt"]}[case]
    if case == "no checkpoint at all":
        monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    status, out, err = run_predict(images / "one.png", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    if case == "no checkpoint at all":
        assert "train one with `python main.py --model lenet5_regularized`" in err


def test_the_default_is_the_best_finished_checkpoint(trained_runs, tmp_path):
    best = predict.best_checkpoint(trained_runs)
    accuracies = {path.name: files.load_checkpoint(path)["history"][-1]["eval_acc"]
                  for path in (trained_runs / "checkpoints").glob("*.pt")}
    assert best.name == max(accuracies, key=accuracies.get)
    assert predict.best_checkpoint(trained_runs, "custom_mlp").name == "custom_mlp_seed0.pt"
    assert predict.best_checkpoint(tmp_path) is None
