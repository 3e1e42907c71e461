"""Render once, composite many (issue 21): layers files and their compositing at training time.

Real renders of a few procedural cars (64 px crops, 96 px canvases), composited onto small photo
folders written here, so these tests need no ../shared.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import h5py
import numpy as np
import pytest

from carpose.convention import flip_azimuth
from carpose.eval.real_sources import ValidationLeakError, validation_sources
from training.dataset.provenance import background_folders
from training.dataset.reader import CarposeDataset, DatasetError
from training.pose.composite import Compositor, NeighbourConfig, composite_layers, draw_neighbour, layers_config
from training.pose.data import AugmentConfig, CropStream, make_loader
from training.render.interference import InterferenceConfig
from training.render.renderer import mask_box

ROW_KEYS = ("images", "alpha", "shadow", "bbox", "azimuth_deg")


def _photos(folder, n=3, seed=0):
    """A folder (with a subfolder: searched recursively) of ``n`` random-texture JPEG photos."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(sub / f"{i:03d}.jpg"), cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC))
    return folder


def _render(kind, out, count, seed, *extra):
    from training.render.cli import main

    assert main([kind, "--out", str(out), "--count", str(count), "--procedural", "3", "--size", "64", "--quiet",
                 "--seed", str(seed), "--block-size", "8", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    return _render("layers", tmp_path_factory.mktemp("layers") / "layers.h5", 16, 5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("photos"))


def _rows(path):
    with CarposeDataset(path) as ds:
        return [{k: ds.h5[k][i] for k in ROW_KEYS} for i in range(len(ds))], layers_config(ds)


def _plain(cfg):
    """No draw that changes pixels after the cut: only the background and the box jitter vary."""
    return replace(cfg, haze=(0.0, 0.0), interference=InterferenceConfig.none(), truncation_prob=0.0, lowres_prob=0.0)


def test_layers_file_validates_reads_back_and_resumes(layers, tmp_path):
    from training.render.jobs import ModelSpec, run_job
    from training.render.sampling import RenderConfig

    with CarposeDataset(layers) as ds:
        assert ds.kind == "layers" and len(ds) == 16
        assert ds.canvas_shape == (96, 96, 3) and ds.image_shape == (64, 64, 3)  # canvas 1.5 x the crop
        assert ds.h5["alpha"].shape == ds.h5["shadow"].shape == (16, 96, 96)
        lab = ds.labels()
        assert set(lab) == {"azimuth_deg", "elevation_deg", "distance_m", "roll_deg", "model_id", "bbox", "paint_rgb"}
        assert len(ds.models) == 3 and ds.attrs["split"]["split"] == "all" and ds.attrs["seed"] == 5
        assert ds.attrs["render_config"]["crop"]["size"] == 64
    assert background_folders(layers) == []  # nothing real in it: the photos come at training time

    broken = tmp_path / "broken.h5"
    broken.write_bytes(layers.read_bytes())
    with h5py.File(broken, "a") as h5:
        del h5["shadow"]
    with pytest.raises(DatasetError, match="shadow"):
        CarposeDataset(broken)

    # interrupted after its first block, the same job resumes; sample i depends on the seed and i only
    spec, cfg = ModelSpec(procedural=3), RenderConfig()
    cfg = replace(cfg, crop=replace(cfg.crop, size=64))
    out = tmp_path / "resumed.h5"

    def stop(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job("layers", out, 12, spec, cfg, seed=5, block_size=4, progress=False, on_block=stop)
    assert not out.exists() and len(list(out.with_name(out.name + ".parts").glob("block_*.npz"))) == 1
    run_job("layers", out, 12, spec, cfg, seed=5, block_size=4, progress=False)
    with CarposeDataset(out) as a, CarposeDataset(layers) as b:
        for k in ("azimuth_deg", "model_id", "bbox"):
            assert np.array_equal(a.h5[k][:], b.h5[k][:12]), k
        assert np.mean(a.h5["alpha"][:] != b.h5["alpha"][:12]) < 1e-3  # (Mesa may differ in a pixel)


def test_alpha_is_zero_outside_the_car_and_full_inside(layers):
    rows, _ = _rows(layers)
    for r in rows:
        a = r["alpha"]
        assert np.array_equal(mask_box(a > 0), r["bbox"])  # the box is the coverage's
        x1, y1, x2, y2 = r["bbox"].astype(int)
        outside = np.ones_like(a, bool)
        outside[y1:y2, x1:x2] = False
        assert not a[outside].any() and not r["images"][a == 0].any()
        # the core: 2 px in from the silhouette; a pixel or two of it may be a sub-pixel seam between two
        # parts of a procedural car (hood and bumper), which the background does show through
        core = cv2.erode((a > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert core.sum() > 100 and np.mean(a[core] == 255) > 0.99
        assert ((a > 0) & (a < 255)).any()  # an antialiased edge
        assert r["shadow"][:4, :4].min() == 255 and r["shadow"].min() < 255  # ground far away: none; under it: some


def test_two_backgrounds_same_car_different_surroundings(layers):
    rows, cfg = _rows(layers)
    cfg = _plain(cfg)
    noise = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    for r in rows[:6]:
        a = composite_layers(r, noise[0], np.random.default_rng(1), cfg, with_alpha=True)
        b = composite_layers(r, noise[1], np.random.default_rng(1), cfg, with_alpha=True)
        again = composite_layers(r, noise[0], np.random.default_rng(1), cfg)
        assert np.array_equal(a.image, again.image)  # deterministic given the generator
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.bbox, b.bbox)
        car = cv2.erode((a.alpha == 255).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert car.sum() > 50 and np.array_equal(a.image[car], b.image[car])
        around = a.alpha == 0
        assert np.mean(np.any(a.image[around] != b.image[around], axis=1)) > 0.9


def test_the_crop_box_follows_the_jitter_and_the_label_stays(layers, photos):
    rows, cfg = _rows(layers)
    comp = Compositor(photos)
    cfg = _plain(cfg)
    centres = []
    for seed in range(8):
        done = comp(rows[0], np.random.default_rng(seed), cfg, with_alpha=True)
        assert done.image.shape == (64, 64, 3)
        seen = mask_box(done.alpha > 127)
        label = np.clip(done.bbox, 0, 64)  # a tight detector box may cut the car: the label runs past the crop
        assert np.abs(seen - label).max() < 2.0, (seen, done.bbox)
        centres.append((done.bbox[:2] + done.bbox[2:]) / 2)
    assert np.std(np.array(centres), axis=0).max() > 1.0  # the jitter moves the car in the crop

    # through the training stream: labels as stored, or mirrored exactly when the image is mirrored
    with CarposeDataset(layers) as ds:
        truth = np.sort(ds.labels()["azimuth_deg"])
    flip = AugmentConfig(flip_prob=1.0, color_prob=0, gray_prob=0, blur_prob=0, noise_prob=0, jitter_prob=0)
    plain = list(CropStream([layers], train=True, aug=AugmentConfig.none(), seed=2, composite_backgrounds=photos))
    flipped = list(CropStream([layers], train=True, aug=flip, seed=2, composite_backgrounds=photos))
    assert np.allclose(np.sort([float(az) for _, az in plain]), truth, atol=1e-4)
    for (x0, az0), (x1, az1) in zip(plain, flipped, strict=True):
        assert float(az1) == pytest.approx(float(flip_azimuth(float(az0))), abs=1e-4)
        assert np.array_equal(x1.numpy(), x0.numpy()[:, :, ::-1])


def test_validation_frames_are_refused_as_composite_backgrounds(layers, tmp_path):
    from training.pose.train import main

    folder = validation_sources()[0].images
    with pytest.raises(ValidationLeakError, match="render backgrounds"):
        Compositor(folder)
    with pytest.raises(ValidationLeakError):
        CropStream([layers], train=True, composite_backgrounds=folder)
    assert main(["--train", str(layers), "--composite-backgrounds", str(folder), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--workers", "0", "--quiet"]) == 2
    with pytest.raises(DatasetError, match="composite-backgrounds"):
        CropStream([layers], train=True)  # a layers file needs backgrounds


def test_one_epoch_on_a_layers_and_a_crops_file(layers, photos, tmp_path):
    from carpose.pose import load_checkpoint
    from training.pose.train import main

    crops = _render("crops", tmp_path / "crops.h5", 16, 6)
    out = tmp_path / "run"
    assert main(["--train", str(layers), str(crops), "--composite-backgrounds", str(photos), "--out", str(out),
                 "--epochs", "1", "--batch", "16", "--workers", "1", "--threads", "1", "--neighbours", "0.5",
                 "--quiet"]) == 0
    _, ck = load_checkpoint(out / "best.pt")
    meta = ck["metadata"]
    assert meta["composite_backgrounds"] == str(photos) and meta["neighbours"] == 0.5
    assert meta["input_size"] == 64 and meta["crop"]["size"] == 64
    assert meta["train_files"] == [str(layers), str(crops)] and meta["train_backgrounds"] == []
    assert len(ck["history"]) == 1


def test_a_neighbour_car_stands_beside_and_hides_at_most_its_share(layers):
    """Issue 21: a second car beside the labelled one (a parked row). In front it hides at most
    ``max_cover`` of the target's coverage and stands lower (nearer); the target's crop box and every
    other draw are those of the composite without it; behind, the target hides it."""
    rows, cfg = _rows(layers)
    cfg = _plain(cfg)
    ncfg = NeighbourConfig(front_prob=1.0, max_cover=0.3)
    bg = np.full((96, 96, 3), 90, np.uint8)
    fronts = 0
    for i, r in enumerate(rows[:8]):
        other = rows[(i + 1) % len(rows)]
        in_front, (rgb, alpha, _) = draw_neighbour(r, other, np.random.default_rng(i), ncfg)
        target = r["alpha"].astype(np.float32) / 255
        if in_front:
            fronts += 1
            assert (alpha * target).sum() <= 0.3 * target.sum() + 1e-3
            assert mask_box(alpha > 0.5)[3] >= r["bbox"][3] - 0.06 * (r["bbox"][3] - r["bbox"][1]) - 1
        assert alpha.max() > 0.99 and np.all(rgb[alpha == 0] == 0)  # a whole car moved, nothing else

        alone = composite_layers(r, bg, np.random.default_rng(7), cfg, with_alpha=True)
        beside = composite_layers(r, bg, np.random.default_rng(7), cfg, with_alpha=True, neighbour=other,
                                  ncfg=ncfg, nrng=np.random.default_rng(i))
        assert np.array_equal(alone.bbox, beside.bbox)  # same cut: the neighbour has its own generator
        assert not np.array_equal(alone.image, beside.image)
        behind = composite_layers(r, bg, np.random.default_rng(7), cfg, with_alpha=True, neighbour=other,
                                  ncfg=replace(ncfg, front_prob=0.0), nrng=np.random.default_rng(i))
        car = behind.alpha == 255  # the target in front of it: its own pixels as without the neighbour
        assert car.sum() > 50 and np.array_equal(behind.image[car], alone.image[car])
    assert fronts >= 4


def test_neighbours_in_the_stream_keep_labels_and_do_not_depend_on_workers(layers, photos):
    kw = dict(train=True, aug=AugmentConfig.none(), seed=3, composite_backgrounds=photos)
    with CarposeDataset(layers) as ds:
        truth = np.sort(ds.labels()["azimuth_deg"])
    none = list(CropStream([layers], **kw))
    assert [np.array_equal(a.numpy(), b.numpy()) for (a, _), (b, _) in
            zip(none, CropStream([layers], neighbours=0.0, **kw), strict=True)] == [True] * len(none)
    every = list(CropStream([layers], neighbours=1.0, **kw))
    assert np.allclose(np.sort([float(az) for _, az in every]), truth, atol=1e-4)
    changed = [not np.array_equal(a.numpy(), b.numpy()) for (a, _), (b, _) in zip(none, every, strict=True)]
    assert np.mean(changed) > 0.5  # some neighbours stand outside the crop

    def by_label(stream_items):
        return {round(float(az), 3): x.numpy() for x, az in stream_items}

    two = make_loader(CropStream([layers], neighbours=1.0, **kw), batch_size=1, workers=2)
    from_workers = by_label((x[0], az[0]) for x, az in two)
    one = by_label(every)
    assert from_workers.keys() == one.keys()
    assert all(np.array_equal(from_workers[k], one[k]) for k in one)
    with pytest.raises(ValueError, match="share"):
        CropStream([layers], neighbours=1.5, **kw)


def test_a_warm_start_calibrates_batchnorm_on_composites_not_on_black_canvases(layers, photos):
    """``--init model.onnx`` recalibrates the recovered BatchNorms on the first training crops: for a
    layers file those are composites at the crop size, not the stored canvases (1.5x, on black)."""
    from training.pose.train import calibration_crops

    crops = calibration_crops(layers, photos, n=8)
    assert crops.shape == (8, 64, 64, 3) and crops.dtype == np.uint8
    with CarposeDataset(layers) as ds:
        assert ds.canvas_shape == (96, 96, 3)
    first = next(iter(CropStream([layers], train=False, composite_backgrounds=photos)))[0]
    assert np.array_equal(crops[0], first.numpy().transpose(1, 2, 0).astype(np.uint8))
    border = np.concatenate([crops[:, :3].reshape(-1, 3), crops[:, -3:].reshape(-1, 3)])
    assert np.mean(np.all(border == 0, axis=1)) < 0.05  # the photo around the car, not the canvas' black


def test_grey_nearer_greys_the_box_of_a_neighbour_in_front_and_nothing_else(layers):
    """What a ``grey_nearer`` model sees at run time (carpose.crop.nearer_boxes): the detector box of the
    car in front painted with the fill. In the composite the front neighbour's box is greyed, every
    other pixel is the composite's without greying; a neighbour behind is never greyed."""
    rows, cfg = _rows(layers)
    cfg = _plain(cfg)
    bg = np.full((96, 96, 3), 90, np.uint8)
    greyed = 0
    for i, r in enumerate(rows):
        other = rows[(i + 1) % len(rows)]
        kw = dict(with_alpha=True, neighbour=other, ncfg=NeighbourConfig(front_prob=1.0))
        plain = composite_layers(r, bg, np.random.default_rng(7), cfg, nrng=np.random.default_rng(i), **kw)
        grey = composite_layers(r, bg, np.random.default_rng(7), cfg, nrng=np.random.default_rng(i),
                                grey_nearer=True, **kw)
        changed = np.any(grey.image != plain.image, axis=2)
        assert np.array_equal(grey.bbox, plain.bbox)
        ys, xs = np.nonzero(changed)
        if len(xs):  # one grey rectangle (clipped by the crop; its edge resized), not the car's outline
            greyed += 1
            assert np.mean(np.all(grey.image[changed] == cfg.crop.fill, axis=1)) > 0.7
            assert changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.9
        kw["ncfg"] = NeighbourConfig(front_prob=0.0)
        behind = [composite_layers(r, bg, np.random.default_rng(7), cfg, nrng=np.random.default_rng(i),
                                   grey_nearer=g, **kw).image for g in (False, True)]
        assert np.array_equal(*behind)
    assert greyed >= 3, greyed  # the others stand less than the margin lower (nearer_boxes)


def test_the_neighbour_geometry_of_a_run_comes_from_its_arguments():
    from training.pose.train import neighbour_config, parse_args

    base = ["--train", "x.h5", "--out", "o"]
    assert neighbour_config(parse_args(base)) is None  # no neighbours, no geometry
    near = neighbour_config(parse_args([*base, "--neighbours", "0.5", "--neighbour-front-height", "1.0", "2.2",
                                        "--neighbour-max-cover", "0.8"]))
    assert near == NeighbourConfig(front_height=(1.0, 2.2), max_cover=0.8)
    assert neighbour_config(parse_args([*base, "--neighbours", "0.5"])) == NeighbourConfig()
    with pytest.raises(ValueError, match="LO <= HI"):
        neighbour_config(parse_args([*base, "--neighbours", "0.5", "--neighbour-front-height", "2", "1"]))


def test_the_stream_places_neighbours_by_its_geometry(layers, photos):
    kw = dict(train=False, seed=3, composite_backgrounds=photos, neighbours=1.0)
    default = [x.numpy() for x, _ in CropStream([layers], **kw)]
    behind = [x.numpy() for x, _ in CropStream([layers], neighbour_config=NeighbourConfig(front_prob=0.0), **kw)]
    again = [x.numpy() for x, _ in CropStream([layers], neighbour_config=NeighbourConfig(), **kw)]
    assert all(np.array_equal(a, b) for a, b in zip(default, again, strict=True))
    assert sum(not np.array_equal(a, b) for a, b in zip(default, behind, strict=True)) >= 3
