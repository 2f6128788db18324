"""WaferGenerator: the public API end to end on the committed bundle."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from edge_infer import Generated, WaferGenerator
from edge_infer.errors import InputError, OutputError
from edge_infer.sampling import MixFallback
from edge_infer.wafer import CLASS_NAMES, ResizeNote, outline, to_onehot, to_states


@pytest.fixture(scope="module")
def gen(bundle_dir) -> WaferGenerator:
    return WaferGenerator.load(bundle_dir, provider="cpu")


def _is_onehot(maps: np.ndarray) -> bool:
    return maps.dtype == np.float32 and set(np.unique(maps)) <= {0.0, 1.0} and (maps.sum(-1) == 1).all()


def test_generate_shapes_labels_sources(gen):
    r = gen.generate("Scratch", 7, seed=0)
    assert isinstance(r, Generated) and len(r) == 7
    assert r.maps.shape == (7, 26, 26, 3) and _is_onehot(r.maps)
    scratch = gen.classes.index("Scratch")
    assert r.labels.shape == (7, 1) and r.labels.dtype == np.int64 and (r.labels == scratch).all()
    assert r.sources.dtype == np.int64 and (gen.bundle.labels[r.sources] == scratch).all()
    assert len(set(r.sources)) == 7  # n ≤ class count: distinct sources


def test_class_by_any_name_case_or_index(gen):
    a = gen.generate("edge-loc", 3, seed=1)
    b = gen.generate("EDGE-LOC", 3, seed=1)
    c = gen.generate(2, 3, seed=1)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.maps, c.maps)


def test_same_seed_same_maps_other_seed_other_maps(gen):
    a = gen.generate("Loc", 6, seed=11)
    b = gen.generate("Loc", 6, seed=11)
    c = gen.generate("Loc", 6, seed=12)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.sources, b.sources)
    assert not np.array_equal(a.maps, c.maps)


def test_outline_lock_keeps_the_source_outline_exactly(gen):
    r = gen.generate("Near-full", 40, seed=2)
    np.testing.assert_array_equal(outline(r.maps), gen.bundle.outlines[gen.bundle.outline_ids[r.sources]])
    # off: the plain argmax of the same decoder output. Strength pinned: raw maps are
    # never redrawn, one-hot ones are when equal to a sibling, and at the default 0.3
    # two of these all-defect Near-full variants come out equal (row 34 = row 18).
    free = gen.generate("Near-full", 40, seed=2, outline_lock=False, strength=0.4)
    raw = gen.generate("Near-full", 40, seed=2, raw=True, strength=0.4)
    np.testing.assert_array_equal(free.maps, to_onehot(raw.maps.argmax(-1)))
    inside = ~gen.bundle.outlines[gen.bundle.outline_ids[r.sources]]
    # inside the wafer the lock only chooses between normal and defect
    assert (to_states(r.maps)[inside] != 0).all()


def test_raw_returns_probabilities(gen):
    raw = gen.generate("Center", 4, seed=0, raw=True)
    assert raw.maps.dtype == np.float32 and raw.maps.shape == (4, 26, 26, 3)
    assert (raw.maps >= 0).all() and (raw.maps <= 1).all() and not _is_onehot(raw.maps)


def test_augment_order_labels_and_distinct_siblings(gen):
    k = 3
    r = gen.augment(k, seed=0, raw=True)
    m = gen.bundle.count
    assert r.maps.shape == (m * k, 26, 26, 3)
    np.testing.assert_array_equal(r.sources, np.repeat(np.arange(m), k))
    np.testing.assert_array_equal(r.labels[:, 0], np.repeat(gen.bundle.labels, k))
    groups = r.maps.reshape(m, k, -1)
    for i in range(0, m, 97):  # siblings are never identical
        assert len({v.tobytes() for v in groups[i]}) == k


def test_augment_given_maps_in_states_form(gen):
    maps = to_states(gen.bank_maps(np.arange(6)))  # (6, 26, 26) die states
    labels = gen.bundle.labels[:6]
    r = gen.augment(2, maps=maps, labels=labels, seed=0)
    assert r.maps.shape == (12, 26, 26, 3)
    np.testing.assert_array_equal(r.labels[:, 0], np.repeat(labels, 2))
    np.testing.assert_array_equal(outline(r.maps), np.repeat(maps == 0, 2, axis=0))
    with pytest.raises(InputError, match="labels"):
        gen.augment(2, maps=maps)


def test_given_maps_single_and_other_sizes(gen):
    one = to_states(gen.bank_maps([5]))[0]  # a single (26, 26) map
    r = gen.generate("Center", 3, maps=one, seed=0)  # no labels: all given maps are the class
    assert r.maps.shape == (3, 26, 26, 3) and (r.sources == 0).all() and (r.labels == 0).all()
    np.testing.assert_array_equal(outline(r.maps), np.broadcast_to(one == 0, (3, 26, 26)))
    big = np.repeat(np.repeat(one, 2, axis=0), 2, axis=1)  # 52×52
    with pytest.warns(ResizeNote, match="52×52"):
        r2 = gen.generate("Center", 2, maps=big[None], seed=0)
    assert r2.maps.shape == (2, 26, 26, 3)
    np.testing.assert_array_equal(outline(r2.maps)[0], one == 0)
    onehot = to_onehot(one)
    np.testing.assert_array_equal(gen.generate(0, 2, maps=onehot, seed=4).maps, gen.generate(0, 2, maps=one, seed=4).maps)
    with pytest.raises(InputError, match="no maps of class"):
        gen.generate("Donut", 2, maps=one[None], labels=[0])


def test_source_index(gen):
    i = int(np.flatnonzero(gen.bundle.labels == 3)[0])
    r = gen.generate(None, 4, source_index=i, seed=0)
    assert (r.sources == i).all() and (r.labels == 3).all()
    assert len({m.tobytes() for m in gen.generate(None, 4, source_index=i, seed=0, raw=True).maps}) == 4
    np.testing.assert_array_equal(gen.generate("Edge-Ring", 4, source_index=i, seed=0).maps, r.maps)
    with pytest.raises(InputError, match="is class Edge-Ring, not Center"):
        gen.generate("Center", 2, source_index=i)
    with pytest.raises(InputError, match=r"whole number in 0\.\.1280"):
        gen.generate(None, 2, source_index=gen.bundle.count)
    with pytest.raises(InputError, match="give a class"):
        gen.generate(None, 2)


@pytest.mark.parametrize("n", [0, -3, True, 2.5])
def test_bad_counts(gen, n):
    with pytest.raises(InputError, match="n must"):
        gen.generate("None", n)


def test_unknown_class_lists_valid_names(gen):
    with pytest.raises(InputError) as err:
        gen.generate("Scratchy", 2)
    assert all(name in str(err.value) for name in CLASS_NAMES)


def test_huge_n_in_memory_is_refused_with_the_size(gen):
    with pytest.raises(InputError, match=r"GiB.*generate_to_files"):
        gen.generate("None", 10_000_000)


def test_mix_method_and_donut_fallback(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = gen.generate("Scratch", 5, seed=3, method="mix")
    np.testing.assert_array_equal(a.maps, gen.generate("Scratch", 5, seed=3, method="mix").maps)
    # mixing changes the result but not the choice of sources
    b = gen.generate("Scratch", 5, seed=3, method="noise")
    np.testing.assert_array_equal(a.sources, b.sources)
    assert not np.array_equal(a.maps, b.maps)
    with pytest.warns(MixFallback, match="Donut"):
        d = gen.generate("Donut", 3, seed=0, method="mix", raw=True)
    assert len({m.tobytes() for m in d.maps}) == 3


def test_course_noise_mode(gen):
    r = gen.generate("Loc", 5, seed=0, mode="course")
    assert _is_onehot(r.maps)
    with pytest.raises(InputError, match="noise mode"):
        gen.generate("Loc", 5, mode="loud")


def test_streaming_equals_in_memory(gen, tmp_path, monkeypatch):
    n = 3 * 64 + 5  # crosses blocks, and noise streams (128 rows) mid-stream
    whole = gen.generate("None", n, seed=9)  # one block
    monkeypatch.setattr("edge_infer.generator.BLOCK_ROWS", 64)  # small blocks: same logic, faster
    mem = gen.generate("None", n, seed=9)
    np.testing.assert_array_equal(mem.maps, whole.maps)
    seen = []
    s = gen.generate_to_files("None", n, tmp_path, seed=9, progress=lambda d, t: seen.append((d, t)))
    np.testing.assert_array_equal(np.load(s.data_path), mem.maps)
    np.testing.assert_array_equal(np.load(s.label_path), mem.labels)
    np.testing.assert_array_equal(s.sources, mem.sources)
    assert seen[-1] == (n, n)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen_data.npy", "gen_label.npy"]
    with pytest.raises(OutputError, match="already exists"):
        gen.generate_to_files("None", 3, tmp_path, seed=9)
    gen.generate_to_files("None", 3, tmp_path, seed=9, force=True)
    assert np.load(tmp_path / "gen_data.npy").shape == (3, 26, 26, 3)


def test_streaming_interrupted_leaves_nothing(gen, tmp_path):
    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen.generate_to_files("None", 10, tmp_path, seed=0, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_bank_maps_are_the_decoded_bank_latents_outline_locked(gen):
    """bank_maps runs the generator graph at zero noise: it must be exactly
    decoder.onnx + the outline lock on every bank latent, in any order."""
    idx = np.concatenate([np.arange(gen.bundle.count), [7, 7, 0]])
    want = gen.decode(gen.bundle.latents[idx], outlines=gen.bundle.outlines[gen.bundle.outline_ids[idx]])
    np.testing.assert_array_equal(gen.bank_maps(idx), want)
    with pytest.raises(InputError, match="bank index out of range"):
        gen.bank_maps([gen.bundle.count])


def test_no_bank_maps_and_no_latents_decode_to_no_maps(gen):
    assert gen.bank_maps([]).shape == (0, 26, 26, 3)
    assert gen.decode(np.zeros((0, 64, 3, 3), np.float32)).shape == (0, 26, 26, 3)


def test_encode_decode_reconstruct(gen):
    maps = gen.bank_maps(np.arange(10))
    z = gen.encode(maps)
    assert z.shape == (10, 64, 3, 3) and z.dtype == np.float32
    assert gen.decode(z[0]).shape == (1, 26, 26, 3)
    assert _is_onehot(gen.decode(z))
    assert gen.decode(z, raw=True).dtype == np.float32
    locked = gen.decode(z, outlines=outline(maps))
    np.testing.assert_array_equal(outline(locked), outline(maps))
    rec = gen.reconstruct(maps)
    assert rec.shape == maps.shape and _is_onehot(rec)
    np.testing.assert_array_equal(outline(gen.reconstruct(maps, outline_lock=True)), outline(maps))
    with pytest.raises(InputError, match="latents have shape"):
        gen.decode(np.zeros((2, 32, 3, 3)))
    with pytest.raises(InputError, match="NaN"):
        gen.decode(np.full((1, 64, 3, 3), np.nan))
    with pytest.raises(InputError):
        gen.encode(np.zeros((2, 3, 26, 26)))


def test_reconstruction_is_close_on_the_course_data(gen, wafer_data):
    maps = wafer_data.maps[:300]
    rec = gen.reconstruct(maps)
    accuracy = (to_states(rec) == to_states(maps)).mean()
    assert accuracy > 0.85
    np.testing.assert_array_equal(gen.encode(maps), gen.bundle.latents[:300])


def test_one_generator_many_threads_same_seed_same_maps(gen):
    expected = gen.generate("Random", 8, seed=5).maps
    results = []

    def work() -> None:
        for _ in range(3):
            results.append(gen.generate("Random", 8, seed=5).maps)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_provider_reported(gen):
    assert gen.provider == "cpu" and gen.provider_info.actual == "cpu"
    assert gen.classes == CLASS_NAMES


def test_eight_threads_times_a_hundred_calls_equal_serial_results(gen):
    # Issue 6: one shared generator, mixed classes, seeds, batch sizes and options
    # (both generator graphs); every threaded result must equal the serial one exactly.
    classes = ["None", "Center", "Loc", "Edge-Ring", "Scratch", "Donut", 2, "random"]
    calls = []  # (thread, class, n, seed, options)
    for t in range(8):
        for k in range(100):
            i = 100 * t + k
            opts = {"method": "mix"} if i % 7 == 3 else {}
            if i % 11 == 5:
                opts["outline_lock"] = False
            calls.append((t, classes[(t + k) % len(classes)], 1 + (i * 7919) % 5, i * 31 + 7, opts))
    got: dict = {}
    errors: list = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i, c in enumerate(calls):
                if c[0] == t:
                    got[i] = gen.generate(c[1], c[2], seed=c[3], **c[4])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # Filters set once here: warnings.catch_warnings itself is not thread-safe.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixFallback)
        serial = [gen.generate(c[1], c[2], seed=c[3], **c[4]) for c in calls]
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors, errors
    assert len(got) == 800
    for i, want in enumerate(serial):
        np.testing.assert_array_equal(got[i].maps, want.maps)
        np.testing.assert_array_equal(got[i].sources, want.sources)
        np.testing.assert_array_equal(got[i].labels, want.labels)


def test_lock_outline_on_the_host_equals_decode_with_outlines(gen):
    # decode/reconstruct lock outlines on the host (generation does it in the graph).
    from edge_infer.wafer import lock_outline

    probs = gen.decode(gen.bundle.latents[:6], raw=True)
    boundary = gen.bundle.outlines[gen.bundle.outline_ids[np.arange(6)]]
    np.testing.assert_array_equal(lock_outline(probs, boundary), gen.decode(gen.bundle.latents[:6], outlines=boundary))
    np.testing.assert_array_equal(outline(lock_outline(probs, boundary)), boundary)
    np.testing.assert_array_equal(lock_outline(probs, boundary[0]), lock_outline(probs, np.broadcast_to(boundary[0], (6, 26, 26))))


def test_weak_noise_still_gives_no_identical_siblings(gen):
    """At strength 0.1 most siblings would be identical (see docs/evaluation.md);
    identical variants are redrawn with growing noise, in memory and streamed alike."""
    from edge_infer.sampling import repeated_rows, sibling_keys

    res = gen.augment(3, seed=5, strength=0.1)
    assert repeated_rows(sibling_keys(res.sources, res.maps)).size == 0
    again = gen.augment(3, seed=5, strength=0.1)
    assert np.array_equal(res.maps, again.maps)
    course = gen.augment(5, seed=5, mode="course")  # the course schedule is kept as it was
    assert repeated_rows(sibling_keys(course.sources, course.maps)).size > 0


def test_no_identical_siblings_across_noise_blocks(gen, tmp_path):
    from edge_infer.generator import BLOCK_ROWS
    from edge_infer.sampling import repeated_rows, sibling_keys

    n = BLOCK_ROWS + 500  # Donut: one source, so every row is a sibling of every other
    res = gen.generate("Donut", n, seed=2, strength=0.1)
    assert repeated_rows(sibling_keys(res.sources, res.maps)).size == 0
    streamed = gen.generate_to_files("Donut", n, tmp_path, seed=2, strength=0.1)
    assert np.array_equal(np.load(streamed.data_path), res.maps)


def test_generate_is_generator_onnx_on_the_plan(gen):
    # The contract other clients rely on: the maps are generator.onnx run on the
    # result's sources with the seed unchanged, row0 0 and the default strength.
    import onnxruntime as ort

    session = ort.InferenceSession(str(gen.bundle.generator_path), providers=["CPUExecutionProvider"])
    res = gen.generate("Center", 30, seed=123)
    feeds = {"source": res.sources, "seed": np.array([123], np.int64), "row0": np.array([0], np.int64),
             "strength": np.array([gen.bundle.noise_defaults.strength], np.float32)}
    np.testing.assert_array_equal(session.run(None, feeds)[0], res.maps)
    # rows 10..29 alone, by their row0
    part = session.run(None, {**feeds, "source": res.sources[10:], "row0": np.array([10], np.int64)})[0]
    np.testing.assert_array_equal(part, res.maps[10:])


def test_seeds_out_of_int64_are_refused_and_none_is_fresh(gen):
    for bad in (-1, 2**63):
        with pytest.raises(InputError, match="seed must be a whole number from 0 to 2"):
            gen.generate("None", 2, seed=bad)
    assert not np.array_equal(gen.generate("None", 4).maps, gen.generate("None", 4).maps)
    top = gen.generate("None", 2, seed=2**63 - 1)
    np.testing.assert_array_equal(top.maps, gen.generate("None", 2, seed=2**63 - 1).maps)


def test_thread_count_does_not_change_the_maps(gen, bundle_dir):
    one = WaferGenerator.load(bundle_dir, provider="cpu", threads=1)
    for kwargs in ({}, {"method": "mix"}, {"mode": "course"}):
        np.testing.assert_array_equal(one.generate("Loc", 200, seed=4, **kwargs).maps,
                                      gen.generate("Loc", 200, seed=4, **kwargs).maps)


def test_any_block_split_gives_the_same_maps_redraws_included(gen, monkeypatch, tmp_path):
    # Donut has one source: every row is a sibling of every other, and at strength 0.1
    # many first draws clash, so redraws (defined row by row) decide most rows.
    whole = gen.generate("Donut", 150, seed=8, strength=0.1)
    for rows in (1, 7, 64):
        monkeypatch.setattr("edge_infer.generator.BLOCK_ROWS", rows)
        np.testing.assert_array_equal(gen.generate("Donut", 150, seed=8, strength=0.1).maps, whole.maps)
    s = gen.generate_to_files("Donut", 150, tmp_path, seed=8, strength=0.1)
    np.testing.assert_array_equal(np.load(s.data_path), whole.maps)


def test_sibling_redraw_follows_its_documented_definition(gen):
    # docs/other-languages.md: row r keeps the first of attempts 0..8 whose map differs
    # from every kept map of an earlier row with the same source; attempt k is
    # generator_core.onnx with attempt k and sigma x 1.5**k. Reproduced here with
    # onnxruntime alone.
    import onnxruntime as ort

    from edge_infer.sampling import MAX_REDRAWS

    seed, strength, n = 3, 0.1, 40
    res = gen.generate("Donut", n, seed=seed, strength=strength)
    core = ort.InferenceSession(str(gen.bundle.core_path), providers=["CPUExecutionProvider"])
    src = int(res.sources[0])
    sigma = np.float32(strength) * gen.bundle.latent_std

    def draw(row: int, attempt: int) -> np.ndarray:
        feeds = {"latent": gen.bundle.latents[[src]], "sigma": (sigma * np.float32(1.5**attempt))[None],
                 "outline": gen.bundle.outlines[gen.bundle.outline_ids[[src]]], "seed": np.array([seed], np.int64),
                 "row": np.array([row], np.int64), "attempt": np.array([attempt], np.int64)}
        return core.run(["maps"], feeds)[0][0]

    kept: list = []
    redrawn = 0
    for r in range(n):
        for k in range(MAX_REDRAWS + 1):
            m = draw(r, k)
            if not any(np.array_equal(m, e) for e in kept):
                break
        redrawn += k > 0
        kept.append(m)
        np.testing.assert_array_equal(res.maps[r], m)
    assert redrawn > 0  # the case is one where redraws matter


def test_a_graph_computing_nan_or_non_one_hot_maps_is_a_bundle_error_naming_it(gen, monkeypatch):
    from edge_infer.errors import BundleError

    class Wrapped:
        """A session whose outputs are spoiled by ``spoil`` (a bundle is code from elsewhere)."""

        def __init__(self, session, spoil):
            self.session, self.spoil = session, spoil

        def run(self, names, feeds):
            return [self.spoil(out) for out in self.session.run(names, feeds)]

        def __getattr__(self, name):
            return getattr(self.session, name)

    def nan(out):
        out = out.copy()
        out[0, 3, 3, 0] = np.nan
        return out

    def half(out):
        return out * 0.5

    latents = gen.bundle.latents[:4]
    monkeypatch.setattr(gen, "decoder_session", Wrapped(gen.decoder_session, nan))
    with pytest.raises(BundleError, match=r"decoder\.onnx: the graph computed NaN or infinite values"):
        gen.decode(latents)
    monkeypatch.undo()
    monkeypatch.setattr(gen, "generator_session", Wrapped(gen.generator_session, half))
    with pytest.raises(BundleError, match=r"generator\.onnx: the graph's maps are not one-hot"):
        gen.generate("Loc", 3, seed=0)
    monkeypatch.setattr(gen, "core_session", Wrapped(gen.core_session, nan))
    with pytest.raises(BundleError, match=r"generator_core\.onnx: the graph computed NaN"):
        gen.generate("Loc", 3, seed=0, method="mix")
    monkeypatch.undo()
    assert _is_onehot(gen.generate("Loc", 3, seed=0).maps)  # the real graphs again
