"""Point-cloud IFS plugin: I/O, normalisation, contractive maps, the chaos game, fitting, codec, CLI, bad input.

PLY and XYZ files need no open3d; the tests that need open3d skip, naming why it is not usable (on a
machine without libusb it fails to load, which ``pytest.importorskip`` does not turn into a skip)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from collagekit.container import read_container, write_container
from collagekit.errors import CollagekitError
from collagekit.registry import get_registry
from collagekit_pointcloud.chamfer import NearestIndex, chamfer, nearest
from collagekit_pointcloud import o3d
from collagekit_pointcloud.chaos import chaos_game
from collagekit_pointcloud.cloudio import Normalisation, label_colours, load_cloud, save_cloud
from collagekit_pointcloud.fit import FitSettings, fit_ifs
from collagekit_pointcloud.ifs import IFS, ContractiveMaps
from collagekit_pointcloud.ifscodec import IFSCodec, pack
from collagekit_pointcloud.partition import KMeans, Octree
from collagekit_pointcloud.targets import random_ifs, sierpinski_tetrahedron, unit_cube
from collagekit_pointcloud.tasks import sample_cloud

from conftest import invoke

needs_open3d = pytest.mark.skipif(o3d.problem() is not None, reason=f"needs open3d, which does not load here: {o3d.problem()}")

MAX = 1 << 26
FAST_FIT = ["--fit.steps", "30", "--fit.register_steps", "5", "--fit.sample", "256", "--fit.restarts", "2", "--fit.trials", "2", "--fit.trial_steps", "20"]


def _write_ply(path: Path, points: np.ndarray) -> Path:
    """A binary float32 x/y/z PLY written by hand, so bad values (NaN, inf) reach the reader unchanged."""
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_bytes(header.encode() + np.asarray(points, dtype=np.float32).reshape(-1, 3).tobytes())
    return path


# ------------------------------------------------------------------ I/O and normalisation
def test_ply_round_trip_keeps_points_and_colours(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    xyz = torch.randn(500, 3, generator=gen) * 3 + 10
    rgb = torch.rand(500, 3, generator=gen)
    save_cloud(torch.cat([xyz, rgb], 1).T[None], tmp_path / "c.ply")
    back = load_cloud(tmp_path / "c.ply", MAX)
    assert back.shape == (1, 6, 500)
    assert torch.equal(back[0, :3].T, xyz)  # float32 coordinates are stored exactly
    assert (back[0, 3:].T - rgb).abs().max() <= 0.5 / 255 + 1e-6  # colours are 8-bit in PLY
    save_cloud(xyz.T[None], tmp_path / "plain.xyz")
    assert torch.allclose(load_cloud(tmp_path / "plain.xyz", MAX)[0].T, xyz, atol=1e-4)


def test_normalisation_round_trip_and_unit_cube() -> None:
    xyz = torch.tensor([[1.0, -2.0, 5.0], [3.0, 2.0, 5.5], [2.0, 0.0, 6.0]], dtype=torch.float64)
    norm = Normalisation.of(xyz)
    unit = norm.forward(xyz)
    assert float(unit.min()) >= 0 and float(unit.max()) <= 1
    assert math.isclose(float((unit.amax(0) - unit.amin(0)).max()), 1.0)  # longest side fills the cube
    assert torch.allclose(norm.inverse(unit), xyz, atol=1e-12)
    with pytest.raises(CollagekitError, match="identical"):
        Normalisation.of(torch.ones(4, 3))


def _on_box_faces(points: torch.Tensor, size: tuple[float, float, float]) -> bool:
    """Every point lies on a face of the box [0, size]: one coordinate at its min or max."""
    on_face = torch.zeros(len(points), dtype=torch.bool)
    for axis, top in enumerate(size):
        on_face |= points[:, axis].isclose(torch.tensor(0.0), atol=1e-5) | points[:, axis].isclose(torch.tensor(top), atol=1e-5)
    return bool(on_face.all())


BOX_CORNERS = [(x, y, z) for z in (0, 1) for y in (0, 1) for x in (0, 2)]  # a 2 x 1 x 1 box
BOX_QUADS = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]


def test_ply_meshes_are_sampled_on_the_surface_without_open3d(tmp_path: Path) -> None:
    """ASCII and big-endian binary PLY meshes with quad faces (split into triangles), read by collagekit itself."""
    head = "element vertex 8\nproperty float x\nproperty float y\nproperty float z\nelement face 6\nproperty list uchar int vertex_indices\nend_header\n"
    ascii_body = "".join(f"{x} {y} {z}\n" for x, y, z in BOX_CORNERS) + "".join(f"4 {' '.join(map(str, q))}\n" for q in BOX_QUADS)
    (tmp_path / "box_ascii.ply").write_text("ply\nformat ascii 1.0\ncomment a box\n" + head + ascii_body)
    vertices = np.array(BOX_CORNERS, dtype=">f4").tobytes()
    faces = b"".join(np.array([4], dtype="u1").tobytes() + np.array(q, dtype=">i4").tobytes() for q in BOX_QUADS)
    (tmp_path / "box_big.ply").write_bytes(("ply\nformat binary_big_endian 1.0\n" + head).encode() + vertices + faces)
    for name in ("box_ascii.ply", "box_big.ply"):
        points = load_cloud(tmp_path / name, MAX)[0].T
        assert points.shape[0] >= 1000 and _on_box_faces(points, (2.0, 1.0, 1.0)), name
        assert float(points[:, 0].max() - points[:, 0].min()) > 1.9  # spread over the whole box


def test_ply_reader_matches_the_shipped_sample_and_refuses_truncation(tmp_path: Path) -> None:
    raw = sample_cloud().read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n") :]
    expected = torch.from_numpy(np.frombuffer(body, dtype="<f4").reshape(-1, 3).copy())
    assert torch.equal(load_cloud(sample_cloud(), MAX)[0].T, expected)  # every float exactly as stored
    (tmp_path / "cut.ply").write_bytes(raw[:-100])
    with pytest.raises(CollagekitError, match="shorter than its PLY header says"):
        load_cloud(tmp_path / "cut.ply", MAX)


@needs_open3d
def test_mesh_files_are_sampled_on_the_surface(tmp_path: Path) -> None:
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh.create_box(2.0, 1.0, 1.0)
    o3d.io.write_triangle_mesh(str(tmp_path / "box.obj"), mesh)
    points = load_cloud(tmp_path / "box.obj", MAX)[0].T
    assert points.shape[0] >= 1000 and _on_box_faces(points, (2.0, 1.0, 1.0))


def test_missing_open3d_names_the_extra_and_ply_still_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "open3d", None)  # what an absent package looks like to import
    o3d.problem.cache_clear()
    try:
        (tmp_path / "c.pcd").write_text("# .PCD v0.7\n")
        with pytest.raises(CollagekitError, match=r'reading .pcd files needs open3d.*pip install "collagekit\[3d\]"'):
            load_cloud(tmp_path / "c.pcd", MAX)
        assert load_cloud(_write_ply(tmp_path / "c.ply", np.eye(3) * 2), MAX).shape == (1, 3, 3)
    finally:
        o3d.problem.cache_clear()


# ------------------------------------------------------------------ maps and the chaos game
def test_maps_are_contractions_for_any_parameters() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = ContractiveMaps(torch.randn(3, 5, 3, 3, generator=gen), torch.randn(3, 5, 3, generator=gen))
    for scale in (0.1, 10.0, 1000.0):
        for p in maps.parameters():
            p.data = torch.randn(p.shape, generator=gen) * scale
        with torch.no_grad():
            norms = torch.linalg.matrix_norm(maps.linear().double(), ord=2)
        assert float(norms.max()) < 1.0


def test_maps_reproduce_a_contractive_start_including_reflections() -> None:
    target = random_ifs(3, maps=5)
    A = target.A.clone()
    A[::2] = A[::2] @ torch.diag(torch.tensor([1.0, 1.0, -1.0]))  # maps 0, 2, 4 reflect: det < 0
    maps = ContractiveMaps(A[None], target.t[None])
    assert torch.allclose(maps.linear()[0], A, atol=1e-4)
    assert torch.equal(torch.linalg.det(maps.linear()[0]) < 0, torch.linalg.det(A) < 0)


def test_any_contraction_is_encoded_exactly_even_with_half_turns() -> None:
    """Random maps (whose SVD rotations often turn by nearly π, where the antisymmetric part of a rotation
    vanishes) and exact half turns come back from the parametrisation unchanged."""
    from collagekit_pointcloud.ifs import rotation_log, skew

    A = torch.randn(4000, 3, 3, generator=torch.Generator().manual_seed(0))  # ~8 of them turn by nearly π
    A = 0.7 * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    A = A[torch.linalg.svdvals(A)[:, 2] > 0.03]  # above the parametrisation's floor on singular values
    assert torch.allclose(ContractiveMaps(A[None], torch.zeros(1, len(A), 3)).linear()[0], A, atol=1e-5)
    half_turns = torch.stack([torch.diag(torch.tensor(d)) for d in ([1.0, -1, -1], [-1.0, 1, -1], [-1.0, -1, 1])])
    assert torch.allclose(torch.linalg.matrix_exp(skew(rotation_log(half_turns))), half_turns.double(), atol=1e-9)


def test_relaxing_the_bound_keeps_the_maps() -> None:
    A = 0.2 * torch.randn(1, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    maps = ContractiveMaps(A, torch.zeros(1, 5, 3), sigma_max=0.8)
    before = maps.linear().detach().clone()
    maps.relax(0.98)
    assert maps.sigma_max == 0.98 and torch.allclose(maps.linear(), before, atol=1e-6)
    with pytest.raises(CollagekitError, match="new bound"):
        maps.relax(0.5)


def _in_tetrahedron(x: torch.Tensor, v: torch.Tensor, tol: float) -> torch.Tensor:
    """(n 3) -> (n,) whether each point's barycentric coordinates w.r.t. the vertices v are all >= -tol."""
    basis = (v[1:] - v[0]).T.double()
    bary = torch.linalg.solve(basis, (x.double() - v[0].double()).T).T
    full = torch.cat([1 - bary.sum(1, keepdim=True), bary], 1)
    return (full >= -tol).all(1)


def _address_depth(x: torch.Tensor, v: torch.Tensor, levels: int) -> torch.Tensor:
    """How many levels of the Sierpinski address each point survives: undo the map x -> (x + v_k)/2
    whose image (a half-size tetrahedron) holds the point, and check the result is still inside."""
    survived = torch.zeros(len(x), dtype=torch.long)
    alive = torch.ones(len(x), dtype=torch.bool)
    x = x.double()
    for level in range(levels):
        tol = 1e-5 * 2**level  # each undo doubles the float32 error
        candidates = torch.stack([2 * x - v[k].double() for k in range(4)])  # (4 n 3)
        inside = torch.stack([_in_tetrahedron(c, v, tol) for c in candidates])  # (4 n)
        alive &= inside.any(0)
        survived += alive.long()
        x = candidates[inside.double().argmax(0), torch.arange(len(x))]
    return survived


def test_chaos_game_lands_on_the_sierpinski_tetrahedron() -> None:
    ifs = sierpinski_tetrahedron()
    v = 2 * ifs.t
    points, labels = chaos_game(ifs, 20_000, generator=torch.Generator().manual_seed(0), walkers=4096)
    assert points.shape == (20_000, 3) and labels.dtype == torch.uint8
    # the attractor property, eight levels deep: S* = ∪ f_k(S*)
    assert bool((_address_depth(points, v, 8) == 8).all())
    # a uniform sample of the solid tetrahedron fails it, so the check can fail
    w = torch.distributions.Dirichlet(torch.ones(4)).sample((2000,))
    solid = w @ v
    assert float((_address_depth(solid, v, 8) == 8).float().mean()) < 0.2
    # each label names the piece the point lies in, and the pieces are equally likely
    for k in range(4):
        piece = points[labels == k]
        assert bool(_in_tetrahedron(2 * piece - v[k], v, 1e-5).all())
    counts = torch.bincount(labels.long(), minlength=4).float() / 20_000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.01)


def test_chaos_game_any_count_and_reproducible() -> None:
    ifs = random_ifs(1)
    for n in (1, 7, 1000, 300_001):
        points, labels = chaos_game(ifs, n, generator=torch.Generator().manual_seed(5), walkers=1 << 16)
        assert points.shape == (n, 3) and labels.shape == (n,)
        assert torch.isfinite(points).all()
    a = chaos_game(ifs, 5000, generator=torch.Generator().manual_seed(1))[0]
    b = chaos_game(ifs, 5000, generator=torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, b)
    with pytest.raises(CollagekitError, match="not contractive"):
        chaos_game(IFS(torch.eye(3)[None], torch.zeros(1, 3), torch.ones(1)), 10)


# ------------------------------------------------------------------ distances, partitions, fitting
def test_nearest_matches_brute_force_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import collagekit_pointcloud.chamfer as ch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(700, 3, generator=gen), torch.rand(900, 3, generator=gen)
    truth = torch.cdist(a.double(), b.double()).square().min(1)
    monkeypatch.setattr(ch, "CHUNK_ELEMENTS", 1000)  # many small chunks
    monkeypatch.setattr(ch, "KDTREE_WORK", 1 << 40)  # never the KD-tree
    d, i = nearest(a, b)
    assert torch.equal(i, truth.indices) and torch.allclose(d.double(), truth.values, atol=1e-6)
    assert chamfer(a, a) < 1e-6 and chamfer(a, b) > 1e-4  # float32 rounding of |q|^2 - 2 q.r + |r|^2


@needs_open3d
def test_nearest_matches_brute_force_with_the_kdtree(monkeypatch: pytest.MonkeyPatch) -> None:
    import collagekit_pointcloud.chamfer as ch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(700, 3, generator=gen), torch.rand(900, 3, generator=gen)
    truth = torch.cdist(a.double(), b.double()).square().min(1)
    monkeypatch.setattr(ch, "KDTREE_WORK", 0)  # the open3d KD-tree path
    d, i = nearest(a, b)
    assert torch.equal(i, truth.indices) and torch.allclose(d.double(), truth.values, atol=1e-6)
    assert chamfer(a, a) == 0.0 and chamfer(a, b) > 0


@needs_open3d
def test_nearest_index_builds_its_tree_once_and_matches_nearest(monkeypatch: pytest.MonkeyPatch) -> None:
    import collagekit_pointcloud.chamfer as ch

    monkeypatch.setattr(ch, "KDTREE_WORK", 0)  # every query goes through the KD-tree
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(500, 3, generator=gen)
    index = NearestIndex(ref)
    first = index(torch.rand(300, 3, generator=gen))
    tree = index._tree
    assert tree is not None
    for _ in range(2):
        query = torch.rand(200, 3, generator=gen)
        truth = torch.cdist(query.double(), ref.double()).square().min(1)
        d, i = index(query)
        assert index._tree is tree  # reused, not rebuilt
        assert torch.equal(i, truth.indices) and torch.allclose(d.double(), truth.values, atol=1e-6)
    assert first[0].shape == (300,)


def test_joint_choice_spreads_the_maps_over_the_pieces() -> None:
    """Two restarts per map, one onto each of two clusters: judged per cell both maps may pick the same
    cluster; judged on the union, one map must move to the other cluster."""
    from collagekit_pointcloud.fit import _joint_choice

    gen = torch.Generator().manual_seed(0)
    source = torch.rand(200, 3, generator=gen)
    shrink = 0.2 * torch.eye(3)
    left, right = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0.8, 0.0, 0.0])
    A = shrink.expand(2, 2, 3, 3)  # r k 3 3
    t = torch.stack([torch.stack([left, left]), torch.stack([right, right])])  # restart 0: left, 1: right
    restarts = ContractiveMaps(A, t)
    target = torch.cat([0.2 * source[:100] + left, 0.2 * source[100:] + right])
    choice = _joint_choice(restarts, source, target, torch.tensor([0, 0]))
    assert sorted(choice.tolist()) == [0, 1]


def test_refinement_ends_at_its_best_measured_attractor() -> None:
    from collagekit.progress import progress_bar
    from collagekit_pointcloud.fit import _refine, attractor_chamfer

    truth = sierpinski_tetrahedron()
    cloud = chaos_game(truth, 2000, generator=torch.Generator().manual_seed(1))[0]
    index, sample = NearestIndex(cloud), cloud[:256]
    model = ContractiveMaps(truth.A[None], truth.t[None])  # start at the optimum...
    start = attractor_chamfer(model, index, sample)
    settings = FitSettings(sample=256, lr=0.2, check=3)  # ...with a step size that can only leave it
    with progress_bar("test", 12) as bar:
        _refine(model, index, sample, 12, settings, torch.Generator().manual_seed(0), bar, attractor=True, best=start)
    assert attractor_chamfer(model, index, sample) <= start


@pytest.mark.parametrize("partitioner", [KMeans(), Octree()], ids=lambda p: p.name)
def test_partitioners_give_k_nonempty_cells(partitioner) -> None:
    points = torch.rand(400, 3, generator=torch.Generator().manual_seed(0))
    labels = partitioner.split(points, 6, torch.Generator().manual_seed(0))
    assert labels.shape == (400,) and set(labels.tolist()) == set(range(6))
    # even identical points get split into k non-empty cells
    same = partitioner.split(torch.zeros(10, 3), 3, torch.Generator().manual_seed(0))
    assert set(same.tolist()) == {0, 1, 2}


def test_fitting_the_sierpinski_tetrahedron_reaches_a_small_chamfer() -> None:
    target = sierpinski_tetrahedron()
    cloud = unit_cube(chaos_game(target, 4000, generator=torch.Generator().manual_seed(1))[0])
    settings = FitSettings(sample=512, steps=120, register_steps=30, restarts=4, trials=2, trial_steps=30)
    result = fit_ifs(cloud, 4, settings, torch.Generator().manual_seed(0))
    assert float(result.ifs.lipschitz().max()) < 1
    fitted = chaos_game(result.ifs, 4000, generator=torch.Generator().manual_seed(2))[0]
    naive = unit_cube(torch.rand(4000, 3, generator=torch.Generator().manual_seed(3)))
    assert chamfer(fitted, cloud) < 1e-3
    assert chamfer(naive, cloud) > 10 * chamfer(fitted, cloud)  # far better than a blob in the cube
    assert result.history[-1] < result.history[0]  # the collage loss went down


# ------------------------------------------------------------------ codec
def _code(tmp_path: Path) -> Path:
    ifs = sierpinski_tetrahedron()
    norm = Normalisation((10.0, 0.0, -5.0), 4.0)
    path = tmp_path / "s.clg"
    write_container(path, pack(ifs, norm, 1000, 0, {"collagekit": "test"}))
    return path


def test_saved_code_rerenders_at_any_point_count(tmp_path: Path) -> None:
    codec = get_registry().get("codec", "ifs")
    container = read_container(_code(tmp_path))
    default = codec.decode(container, get_registry(), scale=1, device=torch.device("cpu"), options={})
    assert default.shape == (1, 6, 1000)
    big = codec.decode(container, get_registry(), scale=2, device=torch.device("cpu"), options={"points": 12_345})
    assert big.shape == (1, 6, 24_690)
    # back in the original units: the unit cube around centre (10, 0, -5), extent 4
    xyz = big[0, :3].T
    assert float(xyz[:, 0].min()) >= 8 - 1e-4 and float(xyz[:, 0].max()) <= 12 + 1e-4
    with pytest.raises(CollagekitError, match="does not take the option"):
        codec.decode(container, get_registry(), scale=1, device=torch.device("cpu"), options={"colour": 1})


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda c: c.tensors.update(A=c.tensors["A"] * 2.5), "not a contraction"),
        (lambda c: c.tensors.update(t=c.tensors["t"] * float("nan")), "NaN"),
        (lambda c: c.tensors.update(p=c.tensors["p"][:2]), "tensor .p. should be float32"),
        (lambda c: c.header.update(points=10**12), "points"),
        (lambda c: c.header.pop("normalisation"), "normalisation"),
    ],
)
def test_tampered_codes_fail_with_one_line(tmp_path: Path, tamper, message: str) -> None:
    container = read_container(_code(tmp_path))
    tamper(container)
    with pytest.raises(CollagekitError, match=message) as info:
        IFSCodec().decode(container, get_registry(), scale=1, device=torch.device("cpu"), options={})
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ CLI
def test_cli_fractalize_then_decompress(tmp_path: Path) -> None:
    out = tmp_path / "fractal.ply"
    result = invoke(
        "fractalize", str(sample_cloud()), "-o", str(out), "--maps", "4", "--points", "5000",
        "--png", str(tmp_path / "view.png"), "--device", "cpu", *FAST_FIT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cloud = load_cloud(out, MAX)
    assert cloud.shape == (1, 6, 5000)
    assert (tmp_path / "fractal.clg").is_file() and (tmp_path / "view.png").stat().st_size > 1000
    # the attractor sits where the bunny is (original units, not the unit cube)
    unit = Normalisation.of(load_cloud(sample_cloud(), MAX)[0].T).forward(cloud[0, :3].T)
    assert float(((unit > -0.1) & (unit < 1.1)).all(1).float().mean()) > 0.95
    # four map colours
    assert len(torch.unique((cloud[0, 3:].T * 255).round(), dim=0)) == 4
    again = invoke("decompress", str(tmp_path / "fractal.clg"), "-o", str(tmp_path / "big.ply"), "--points", "20000")
    assert again.returncode == 0, again.stderr
    assert load_cloud(tmp_path / "big.ply", MAX).shape == (1, 6, 20_000)


def _bad_inputs(tmp_path: Path) -> list[tuple[Path, str]]:
    many = _write_ply(tmp_path / "huge.ply", np.zeros((0, 3)))
    many.write_bytes(many.read_bytes().replace(b"element vertex 0", b"element vertex 999999999"))
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a ply file at all\n" * 10)
    return [
        (_write_ply(tmp_path / "empty.ply", np.zeros((0, 3))), "holds no points"),
        (_write_ply(tmp_path / "nan.ply", np.array([[0, 0, 0], [1, np.nan, 0], [1, 1, 1]])), "NaN or infinite"),
        (_write_ply(tmp_path / "inf.ply", np.array([[0, 0, 0], [1, np.inf, 0], [1, 1, 1]])), "NaN or infinite"),
        (_write_ply(tmp_path / "one.ply", np.array([[1, 2, 3]])), "single point"),
        (_write_ply(tmp_path / "same.ply", np.ones((50, 3))), "identical"),
        (many, "declares 999,999,999 points"),
        (garbage, "is not a PLY file"),
    ]


def test_bad_inputs_fail_with_one_line_and_no_output(tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    unknown = tmp_path / "cloud.abc"
    unknown.write_text("1 2 3\n")
    cases.append((unknown, "no installed modality reads '.abc'"))
    for path, message in cases:
        out = tmp_path / f"out_{path.stem}.ply"
        result = invoke("fractalize", str(path), "-o", str(out), *FAST_FIT)
        assert result.returncode == 1, path
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert not out.exists() and not out.with_suffix(".clg").exists()
    assert not list(tmp_path.glob("out_*")) and not list(tmp_path.glob(".*part*"))


def test_label_colours_are_distinct() -> None:
    colours = label_colours(torch.arange(8), 8)
    assert len(torch.unique(colours, dim=0)) == 8


def test_ifs_benchmark_runs_small_and_writes_results(tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "clouds"
    data.mkdir()
    shutil.copy(sample_cloud(), data / "bunny.ply")
    result = invoke(
        "bench", "ifs", "--data", str(data), "--out", str(tmp_path / "results"), "--device", "cpu",
        "targets=1", "points=2000", "steps=10", "trials=1", "trial_steps=5", "register_steps=3", "restarts=1",
        "speed_points=100000", "repeats=1", "ks=[2]", f"pictures={tmp_path / 'pictures'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "results" / "ifs.md").read_text()
    for needle in ("| sierpinski | 4 |", "| fern | 4 |", "| random-00 |", "M points/s", "| bunny | 3000 | 2 |"):
        assert needle in text
    assert (tmp_path / "results" / "ifs.json").is_file()
    from PIL import Image

    with Image.open(tmp_path / "pictures" / "ifs_bunny_k2.png") as picture:  # the scan beside its attractor
        assert picture.size == (640, 320)
    assert "![ifs_bunny_k2](" in text and "| sierpinski | 4 |" in text


def test_ifs_benchmark_splits_are_disjoint_and_the_option_selects_them(tmp_path: Path) -> None:
    from collagekit_pointcloud.bench import known_targets, split_seeds
    from collagekit_pointcloud.config import IFS_BENCH, SPLIT_SEEDS

    assert not set(SPLIT_SEEDS["test"]) & set(SPLIT_SEEDS["validation"])
    with pytest.raises(CollagekitError):  # a count past the split's range would run into the other split
        IFS_BENCH.parse([(["targets"], len(SPLIT_SEEDS["test"]) + 1)])
    assert list(split_seeds("validation", None)) == list(range(1000, 1020))  # the committed validation set
    assert list(split_seeds("test", None)) == list(range(50))
    names = [name for name, _ in known_targets("validation", 2)]
    assert names == ["random-1000", "random-1001"]  # no named fractal: they are benchmark targets
    assert [name for name, _ in known_targets("test", 1)] == ["sierpinski", "fern", "random-00"]
    assert IFS_BENCH.parse([(["split"], "validation")]).split == "validation"
    assert IFS_BENCH.parse([]).split == "test"
    result = invoke(
        "bench", "ifs", "--data", str(tmp_path), "--out", str(tmp_path), "--device", "cpu", "split=validation", "targets=1", "points=500",
        "steps=2", "trials=1", "trial_steps=1", "register_steps=1", "restarts=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "ifs_validation.md").read_text()
    assert "| random-1000 |" in text and "sierpinski" not in text and not (tmp_path / "ifs.md").exists()
    refused = invoke("bench", "ifs", "--data", str(tmp_path), "--out", str(tmp_path), "split=validation", "parts=scans")
    assert refused.returncode != 0 and refused.stderr.strip().startswith("error:") and "split=validation" in refused.stderr
