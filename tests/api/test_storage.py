"""Container storage (computestorage.dll) on the emulator, through both backends.

* import -> export -> import gives identical trees (hypothesis file trees, unicode and
  non-UTF-8 names, symlinks, modes, tombstones);
* merged-view semantics against a model (read-through, copy-on-write, whiteouts, opaque
  directories), in the copy mode and, where this host allows mounts, the overlay mode;
* in-use protection, every error path, path-escape attempts, VHDs, legacy writable layers,
  schema models as documents, and a container whose processes run in the merged view.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyhcs import errors, schema, storage
from pyhcs.storage import Layer, LayerChain, WritableLayer

import rawutil

# ------------------------------------------------------------------------------ fixtures

_overlay_usable: bool | None = None


def _probe_overlay(hcs: ModuleType, tmp: Path) -> bool:
    """Whether the emulator can mount overlayfs here (root, overlay in the kernel)."""
    global _overlay_usable
    if _overlay_usable is None:
        old = os.environ.get("HCSEMU_STORAGE_MODE")
        os.environ["HCSEMU_STORAGE_MODE"] = "overlay"
        wl = tmp / "overlay-probe"
        try:
            hcs.hcs_initialize_writable_layer(str(wl), LayerChain().to_json())
            hcs.hcs_attach_layer_storage_filter(str(wl), LayerChain().to_json())
            hcs.hcs_detach_layer_storage_filter(str(wl))
            _overlay_usable = True
        except errors.HcsError:
            _overlay_usable = False
        finally:
            if old is None:
                del os.environ["HCSEMU_STORAGE_MODE"]
            else:
                os.environ["HCSEMU_STORAGE_MODE"] = old
            with contextlib.suppress(errors.HcsError):
                hcs.hcs_destroy_layer(str(wl))
    return _overlay_usable


@pytest.fixture
def api(hcs: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The backend under test, also behind pyhcs.storage; a private emulator runtime dir."""
    monkeypatch.setattr(storage, "B", hcs)
    monkeypatch.setenv("HCSEMU_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("HCSEMU_STORAGE_MODE", raising=False)
    return hcs


@pytest.fixture(params=["copy", "overlay"])
def mode(request: pytest.FixtureRequest, api: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The merged-view mechanism (HCSEMU_STORAGE_MODE); overlay only where it can mount."""
    name: str = request.param
    if name == "overlay" and not _probe_overlay(api, tmp_path):
        pytest.skip("overlayfs cannot be mounted here (not root, or no overlay support)")
    monkeypatch.setenv("HCSEMU_STORAGE_MODE", name)
    return name


_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
_no_fixture_check = settings(suppress_health_check=_HEALTH)
#: The merged-view property test does a dozen layer operations per example: half the budget.
_heavy = settings(suppress_health_check=_HEALTH, max_examples=max(10, settings().max_examples // 2))

# ------------------------------------------------------------------------------ trees

# A tree: {name (bytes): node}; a node is bytes-content with a mode (file), ("link", target)
# or a dict (directory). Names are bytes, so non-UTF-8 names are covered too.
Tree = dict[bytes, Any]

_name_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1, max_size=10
)
# a few raw bytes that are not UTF-8 (0x80-0xff alone)
_name_bytes = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x | 0x80 for x in b))
names = st.one_of(_name_text.map(os.fsencode), _name_bytes, st.sampled_from([b"#x", b"100%", b"a\nb", b"-"])).filter(
    lambda n: n not in (b".", b"..") and len(n) <= 200
)
files = st.tuples(st.binary(max_size=200), st.sampled_from([0o644, 0o600, 0o755, 0o444]))
links = st.tuples(st.just("link"), st.sampled_from([b"target", b"../../../../etc/passwd", b"/etc/passwd", b"a/b"]))
trees: st.SearchStrategy[Tree] = st.recursive(
    st.dictionaries(names, st.one_of(files, links), max_size=4),
    lambda kids: st.dictionaries(names, st.one_of(files, links, kids), max_size=4),
    max_leaves=14,
)


def write_tree(root: bytes, tree: Tree) -> None:
    os.makedirs(root, exist_ok=True)
    for name, node in tree.items():
        p = os.path.join(root, name)
        if isinstance(node, dict):
            write_tree(p, cast(Tree, node))
        elif node[0] == "link":
            os.symlink(node[1], p)
        else:
            with open(p, "wb") as f:
                f.write(node[0])
            os.chmod(p, node[1])


def snapshot(root: str | bytes | Path, *, mtimes: bool = True, dir_modes: bool = True) -> dict[bytes, tuple[Any, ...]]:
    """relative path (bytes) -> (kind, content or link target, mode[, mtime])."""
    out: dict[bytes, tuple[Any, ...]] = {}
    base = os.fsencode(root)

    def walk(rel: bytes) -> None:
        with os.scandir(os.path.join(base, rel) if rel else base) as it:
            for e in it:
                r = os.path.join(rel, e.name) if rel else e.name
                st_ = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st_.st_mode):
                    out[r] = ("d", stat.S_IMODE(st_.st_mode) if dir_modes else 0)
                    walk(r)
                elif stat.S_ISLNK(st_.st_mode):
                    out[r] = ("l", os.readlink(e.path))
                elif stat.S_ISREG(st_.st_mode):
                    with open(e.path, "rb") as f:
                        data = f.read()
                    extra = (st_.st_mtime_ns,) if mtimes else ()
                    out[r] = ("f", data, stat.S_IMODE(st_.st_mode), *extra)
                else:
                    out[r] = ("?", st_.st_mode)

    walk(b"")
    return out


def read_tombstones(layer: str | Path) -> set[bytes]:
    """Decoded entries of a layer's tombstones.txt (the emulator's export format)."""
    p = Path(layer) / "tombstones.txt"
    if not p.exists():
        return set()
    out: set[bytes] = set()
    for line in p.read_bytes().split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        dec = bytearray()
        i = 0
        while i < len(line):
            if line[i : i + 1] == b"%":
                dec.append(int(line[i + 1 : i + 3], 16))
                i += 3
            else:
                dec.append(line[i])
                i += 1
        out.add(bytes(dec))
    return out


def write_tombstones(layer: str | Path, entries: set[bytes]) -> None:
    """Writes tombstones, escaping every byte that is not plain ASCII (any %XX is accepted)."""
    lines = [b"# written by the tests"]
    for e in sorted(entries):
        lines.append(b"".join(bytes([c]) if (0x21 <= c < 0x7F and c not in b"%#") else b"%%%02X" % c for c in e))
    (Path(layer) / "tombstones.txt").write_bytes(b"\n".join(lines) + b"\n")


def reduce(entries: set[bytes]) -> set[bytes]:
    """Entries below another entry are redundant."""
    return {e for e in entries if not any(e.startswith(o + b"/") for o in entries)}


def ld(*layers: Path | str) -> str:
    return LayerChain(layers).to_json()


# ------------------------------------------------------------------------------ import / export


tombstone_sets = st.sets(st.lists(names, min_size=1, max_size=3).map(lambda c: b"/".join(c)), max_size=5)


@_no_fixture_check
@given(tree=trees, tombs=tombstone_sets, hives=st.booleans())
def test_import_export_import_identical(api: ModuleType, tree: Tree, tombs: set[bytes], hives: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d, "src")
        write_tree(os.fsencode(src / "Files"), tree)
        if hives:
            (src / "Hives").mkdir()
            (src / "Hives" / "System_Delta").write_bytes(b"hive")
            (src / "layout").write_text("{}")
        if tombs:
            write_tombstones(src, tombs)
        layer, layer2 = Path(d, "layer"), Path(d, "layer2")
        exp1, exp2 = Path(d, "exp1"), Path(d, "exp2")
        exp1.mkdir()
        exp2.mkdir()
        api.hcs_import_layer(str(layer), str(src), ld())
        assert snapshot(layer / "Files") == snapshot(src / "Files")
        api.hcs_export_layer(str(layer), str(exp1), ld(), None)
        assert snapshot(exp1 / "Files") == snapshot(src / "Files")
        assert read_tombstones(exp1) == reduce(tombs)
        assert (exp1 / "Hives").exists() == hives and (exp1 / "layout").exists() == hives
        api.hcs_import_layer(str(layer2), str(exp1), ld())
        api.hcs_export_layer(str(layer2), str(exp2), ld(), json.dumps({"IsWritableLayer": False}))
        # identical trees; only tombstones.txt is rewritten (same content, new mtime)
        assert snapshot(exp2 / "Files") == snapshot(exp1 / "Files")
        assert snapshot(exp2, mtimes=False) == snapshot(exp1, mtimes=False)
        assert snapshot(layer2 / "Files") == snapshot(layer / "Files")
        assert snapshot(layer2, mtimes=False) == snapshot(layer, mtimes=False)


def test_pythonic_import_export(api: ModuleType, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(os.fsencode(src / "Files"), {"ünïcödé 文件 🚀".encode(): (b"x", 0o644), b"d": {b"f": (b"y", 0o600)}})
    base = Layer.import_from(src, tmp_path / "base")
    assert base.exists and base.parents == LayerChain()
    app_src = tmp_path / "app-src"
    (app_src / "Files").mkdir(parents=True)
    (app_src / "Files" / "app").write_text("app")
    app = Layer.import_from(app_src, tmp_path / "app", parents=base)
    assert app.chain.paths == (app.path, base.path)
    assert app.layer_data.layers is not None and app.layer_data.layers[0].path == str(base.path)
    (tmp_path / "out").mkdir()
    assert app.export(tmp_path / "out", options=schema.ExportLayerOptions(IsWritableLayer=False)) == tmp_path / "out"
    assert (tmp_path / "out" / "Files" / "app").read_text() == "app"
    # relative paths are made absolute
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rel = Layer.import_from("out", "rel-layer", parents=[base])
        assert rel.path == tmp_path / "rel-layer" and rel.exists
    finally:
        os.chdir(cwd)
    assert storage.layer_id(base.path) == base.id == Layer(str(base.path) + "/").id
    assert app.chain.to_json() == app.chain.layer_data().to_json()
    for lay in (rel, app, base):
        lay.destroy()
    assert not base.path.exists()


# ------------------------------------------------------------------------------ merged view


def apply_model(layers: list[tuple[Tree, set[bytes]]]) -> dict[bytes, tuple[Any, ...]]:
    """The merged tree of layers (base first): what the view must show (no mtimes/dir modes)."""
    view: dict[bytes, tuple[Any, ...]] = {}

    def remove(path: bytes) -> None:
        for k in [k for k in view if k == path or k.startswith(path + b"/")]:
            del view[k]

    def parent_ok(path: bytes) -> bool:
        parent = path.rpartition(b"/")[0]
        return not parent or view.get(parent, ("?",))[0] == "d"

    def add(rel: bytes, tree: Tree) -> None:
        for name, node in tree.items():
            p = rel + b"/" + name if rel else name
            if isinstance(node, dict):
                if view.get(p, ("?",))[0] != "d":
                    remove(p)
                    view[p] = ("d", 0)
                add(p, cast(Tree, node))
            else:
                remove(p)
                view[p] = ("l", node[1]) if node[0] == "link" else ("f", node[0], node[1])

    for tree, tombs in layers:
        for t in sorted(tombs):
            if parent_ok(t):
                remove(t)
        add(b"", tree)
    return view


def view_snapshot(view: Path) -> dict[bytes, tuple[Any, ...]]:
    return snapshot(view, mtimes=False, dir_modes=False)


@_heavy
@given(base=trees, top=trees, data=st.data())
def test_merged_view_semantics(api: ModuleType, mode: str, base: Tree, top: Tree, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        # two image layers; the top one deletes some of the base's paths
        base_paths = sorted(snapshot_tree_paths(base))
        tombs: set[bytes] = set(data.draw(st.lists(st.sampled_from(base_paths), max_size=3))) if base_paths else set()
        s1, s2 = Path(d, "s1"), Path(d, "s2")
        write_tree(os.fsencode(s1 / "Files"), base)
        write_tree(os.fsencode(s2 / "Files"), top)
        if tombs:
            write_tombstones(s2, tombs)
        l1, l2, wl = Path(d, "l1"), Path(d, "l2"), Path(d, "wl")
        b = Layer.import_from(s1, l1)
        t = Layer.import_from(s2, l2, parents=b)
        w = WritableLayer.initialize(wl, parents=t)
        model = apply_model([(base, set()), (top, tombs)])
        with w.attached() as view:
            assert view_snapshot(view) == model, "read-through of the chain"
            for _ in range(data.draw(st.integers(0, 6))):
                mutate(view, model, data)
            assert view_snapshot(view) == model
        assert not (wl / "Merged").exists()
        # nothing in the parents changed; the changes live in the writable layer
        assert snapshot(l1 / "Files") == snapshot(s1 / "Files")
        with w.attached() as view:
            assert view_snapshot(view) == model, "the view survives detach/attach"
        # the writable layer exports and imports as an image layer giving the same view
        exp = Path(d, "exp")
        exp.mkdir()
        w.export(exp)
        top2 = Layer.import_from(exp, Path(d, "l3"), parents=t)
        w2 = WritableLayer.initialize(Path(d, "wl2"), parents=top2)
        with w2.attached() as view2:
            assert view_snapshot(view2) == model
        # idle session: the second writable layer stays empty
        assert snapshot(w2.path / "Files") == {} and not (w2.path / "tombstones.txt").exists()
        for lay in (w2, top2, w, t, b):
            lay.destroy()


def snapshot_tree_paths(tree: Tree, rel: bytes = b"") -> Iterator[bytes]:
    for name, node in tree.items():
        p = rel + b"/" + name if rel else name
        yield p
        if isinstance(node, dict):
            yield from snapshot_tree_paths(cast(Tree, node), p)


def mutate(view: Path, model: dict[bytes, tuple[Any, ...]], data: st.DataObject) -> None:
    """One random change made through the view, mirrored in the model."""
    root = os.fsencode(view)
    dirs = [b"", *sorted(k for k, v in model.items() if v[0] == "d")]
    existing = sorted(model)
    kind = data.draw(st.sampled_from(["write", "mkdir", "delete", "overwrite", "chmod", "symlink"]))
    if kind in ("delete", "overwrite", "chmod") and not existing:
        kind = "write"
    if kind in ("write", "mkdir", "symlink"):
        parent = data.draw(st.sampled_from(dirs))
        name = data.draw(names)
        p = parent + b"/" + name if parent else name
        full = os.path.join(root, p)
        old = model.get(p)
        if old is not None:  # replace whatever is there
            if old[0] == "d":
                rm_rf(full)
            else:
                os.unlink(full)
            for k in [k for k in model if k == p or k.startswith(p + b"/")]:
                del model[k]
        if kind == "write":
            content = data.draw(st.binary(max_size=100))
            with open(full, "wb") as f:
                f.write(content)
            os.chmod(full, 0o644)
            model[p] = ("f", content, 0o644)
        elif kind == "mkdir":
            os.mkdir(full)
            model[p] = ("d", 0)
        else:
            os.symlink(b"somewhere", full)
            model[p] = ("l", b"somewhere")
        return
    p = data.draw(st.sampled_from(existing))
    full = os.path.join(root, p)
    node = model[p]
    if kind == "delete":
        if node[0] == "d":
            rm_rf(full)
        else:
            os.unlink(full)
        for k in [k for k in model if k == p or k.startswith(p + b"/")]:
            del model[k]
    elif kind == "overwrite" and node[0] == "f":
        content = data.draw(st.binary(max_size=100))
        os.chmod(full, 0o644)
        with open(full, "wb") as f:
            f.write(content)
        model[p] = ("f", content, 0o644)
    elif kind == "chmod" and node[0] == "f":
        os.chmod(full, 0o600)
        model[p] = ("f", node[1], 0o600)


def rm_rf(path: bytes) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for dn in dirnames:
            full = os.path.join(dirpath, dn)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for fn in filenames:
            os.unlink(os.path.join(dirpath, fn))
        for dn in dirnames:
            full = os.path.join(dirpath, dn)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


@pytest.fixture
def chain(api: ModuleType, tmp_path: Path) -> tuple[Layer, Layer]:
    """base: a, d/x, d/y, gone, old/o; mid: changes a, deletes d/y, gone; replaces old/."""
    s1, s2 = tmp_path / "s-base", tmp_path / "s-mid"
    for rel, text in {"a": "base a", "d/x": "x", "d/y": "y", "gone": "gone", "old/o": "o", "keep": "k"}.items():
        (s1 / "Files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (s1 / "Files" / rel).write_text(text)
    for rel, text in {"a": "mid a", "m": "m", "old/n": "n"}.items():
        (s2 / "Files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (s2 / "Files" / rel).write_text(text)
    write_tombstones(s2, {b"d/y", b"gone", b"old"})
    base = Layer.import_from(s1, tmp_path / "base")
    mid = Layer.import_from(s2, tmp_path / "mid", parents=base)
    return base, mid


def test_read_through_copy_on_write_whiteouts(mode: str, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    base, mid = chain
    wl = WritableLayer.initialize(tmp_path / "wl", parents=mid)
    with wl.attached() as v:
        assert wl.is_attached and v == wl.view == wl.path / "Merged"
        assert (v / "a").read_text() == "mid a" and (v / "keep").read_text() == "k"
        assert (v / "d" / "x").exists() and not (v / "d" / "y").exists() and not (v / "gone").exists()
        assert sorted(os.listdir(v / "old")) == ["n"]
        (v / "keep").write_text("changed")  # copy-on-write
        (v / "new").write_text("new")
        (v / "d" / "x").unlink()  # whiteout of a base file
        assert (base.path / "Files" / "keep").read_text() == "k"
    assert not wl.is_attached
    assert (wl.path / "Files" / "keep").read_text() == "changed"
    assert (wl.path / "Files" / "new").read_text() == "new"
    assert read_tombstones(wl.path) == {b"d/x"}
    assert (base.path / "Files" / "d" / "x").read_text() == "x"
    # a later process sees the parents on disk
    again = WritableLayer.open(wl.path)
    assert again.parents == mid.chain and not again.is_attached
    with again as w:
        assert (w.view / "keep").read_text() == "changed" and not (w.view / "d" / "x").exists()


def test_in_use_protection(mode: str, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    base, mid = chain
    wl = WritableLayer.initialize(tmp_path / "wl", parents=mid)
    (tmp_path / "exp").mkdir()
    with wl.attached():
        for layer in (base, mid, wl):
            with pytest.raises(errors.SharingViolationError):
                layer.destroy()
        with pytest.raises(errors.SharingViolationError):
            wl.export(tmp_path / "exp")
        with pytest.raises(errors.InvalidStateError):
            storage.attach_layer_storage_filter(wl.path, mid.chain)
        # an attached layer cannot be the parent of another attach
        other = WritableLayer.initialize(tmp_path / "wl-over", parents=wl)
        with pytest.raises(errors.SharingViolationError):
            other.attach()
        other.destroy()
        assert errors.is_retryable(errors.SharingViolationError(errors.HRESULT_FROM_WIN32(32)))
    with pytest.raises(errors.InvalidStateError):
        wl.detach()
    for layer in (wl, mid, base):
        layer.destroy()


def test_detach_while_view_busy(mode: str, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    if mode != "overlay":
        pytest.skip("only a mounted view can be busy")
    wl = WritableLayer.initialize(tmp_path / "wl", parents=chain[1])
    view = wl.attach()
    fd = os.open(view / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(errors.ResourceBusyError):
            wl.detach()
    finally:
        os.close(fd)
    wl.detach()


def test_container_processes_run_in_the_view(
    api: ModuleType, mode: str, chain: tuple[Layer, Layer], tmp_path: Path
) -> None:
    _, mid = chain
    wl = WritableLayer.initialize(tmp_path / "wl", parents=mid)
    hcs = api  # the backend behind pyhcs.storage (the api fixture)
    with wl.attached():
        layers = [{"Id": lay.id, "Path": str(lay.path)} for lay in mid.chain]
        storage_doc = {"Layers": layers, "Path": str(wl.path)}
        with rawutil.running_system(hcs, Container={"Storage": storage_doc}) as system:
            p, info = rawutil.start_process(
                hcs, system, "cat a > copy-of-a; echo hi > out; rm keep; pwd", CreateStdOutPipe=True
            )
            try:
                out = rawutil.read_all(info.std_output)
                done = json.loads(hcs.hcs_wait_for_process_exit(p, 10_000) or "{}")
            finally:
                rawutil.close_info(info)
                hcs.hcs_close_process(p)
            assert done.get("ExitCode") == 0
            # isolated, the view is the system's root; else its working directory on the host
            query = json.dumps({"PropertyTypes": ["EmulatorIsolation"]})
            with rawutil.operation(hcs) as op:
                hcs.hcs_get_compute_system_properties(system, op, query)
                root = json.loads(rawutil.wait(hcs, op) or "{}")["Isolation"]["Root"]
            assert out.decode().strip() == ("/" if root == str(wl.view) else str(wl.view))
    assert (wl.path / "Files" / "out").read_text() == "hi\n"
    assert (wl.path / "Files" / "copy-of-a").read_text() == "mid a"
    assert read_tombstones(wl.path) == {b"keep"}


# ------------------------------------------------------------------------------ documents


def test_documents_as_models_dicts_and_json(api: ModuleType, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    base, mid = chain
    model = schema.LayerData(
        SchemaVersion=schema.Version(Major=2, Minor=1),
        Layers=[
            schema.Layer(Id=mid.id, Path=str(mid.path), PathType="AbsolutePath"),
            schema.Layer(Path=str(base.path)),
        ],
    )
    as_dict = {"Layers": [{"Path": str(mid.path)}, {"Path": str(base.path)}]}
    docs: list[schema.LayerData | dict[str, Any] | str | bytes] = [model, as_dict, model.to_json(), model.to_json().encode()]
    for i, doc in enumerate(docs):
        path = tmp_path / f"wl{i}"
        storage.initialize_writable_layer(path, doc)
        w = WritableLayer.open(path)
        assert w.parents.paths == (mid.path, base.path)
        storage.attach_layer_storage_filter(path, doc)
        storage.detach_layer_storage_filter(path)
        w.destroy()
    # parents as a LayerData model or dict
    assert WritableLayer(tmp_path / "x", parents=model).parents.paths == (mid.path, base.path)
    assert LayerChain.from_layer_data(as_dict)[0].parents.paths == (base.path,)
    with pytest.raises(TypeError):
        Layer(tmp_path / "x", parents="/a/string")
    # strict checking of dicts: a misspelt key never reaches the library
    with pytest.raises(ValueError):
        storage.initialize_writable_layer(tmp_path / "bad", {"Layer": []})
    assert not (tmp_path / "bad").exists()
    # OsLayerOptions / ExportLayerOptions models
    (tmp_path / "e").mkdir()
    mid.export(tmp_path / "e", options={"IsWritableLayer": False})
    base.setup_base_os(options=schema.OsLayerOptions(Type="Container"))
    assert (base.path / "layout").is_file() and (base.path / "Hives").is_dir()
    with pytest.raises(errors.AlreadyExistsError):
        base.setup_base_os(options='{"Type":"Container"}')


# ------------------------------------------------------------------------------ error paths


def test_error_paths(api: ModuleType, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    base, mid = chain
    hcs = api
    missing = str(tmp_path / "missing")
    e0 = ld()
    # NULL-ish and malformed arguments
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_destroy_layer("relative/path")
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_destroy_layer(str(tmp_path) + "/a/../b")
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_destroy_layer("C:\\layers\\x")
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_import_layer(str(tmp_path / "x"), str(tmp_path / "y"), "")
    with pytest.raises(errors.InvalidJsonError):
        hcs.hcs_import_layer(str(tmp_path / "x"), str(tmp_path / "y"), "{")
    with pytest.raises(errors.InvalidJsonError):
        hcs.hcs_initialize_writable_layer(str(tmp_path / "x"), '{"Layers": {}}')
    with pytest.raises(errors.NotSupportedError):
        hcs.hcs_initialize_writable_layer(
            str(tmp_path / "x"), '{"Layers":[{"Path":"/x","PathType":"VirtualSmbShareName"}]}'
        )
    # missing folders
    with pytest.raises(errors.PathNotFoundError) as ei:
        hcs.hcs_import_layer(str(tmp_path / "x"), missing, e0)
    assert isinstance(ei.value, FileNotFoundError)
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_export_layer(str(mid.path), missing, ld(base.path))
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_initialize_writable_layer(str(tmp_path / "x"), ld(missing))
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_destroy_layer(missing)
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_attach_layer_storage_filter(missing, e0)
    with pytest.raises(errors.PathNotFoundError):
        hcs.hcs_setup_base_os_volume(str(base.path), missing)
    # not layers
    (tmp_path / "junk" / "stuff").mkdir(parents=True)
    with pytest.raises(errors.InvalidLayerError):
        hcs.hcs_import_layer(str(tmp_path / "x"), str(tmp_path / "junk"), e0)
    with pytest.raises(errors.InvalidLayerError):
        hcs.hcs_destroy_layer(str(tmp_path / "junk"))
    assert (tmp_path / "junk" / "stuff").exists()
    with pytest.raises(errors.InvalidLayerError):
        hcs.hcs_attach_layer_storage_filter(str(base.path), e0)  # not a writable layer
    with pytest.raises(errors.InvalidLayerError):
        hcs.hcs_detach_layer_storage_filter(str(base.path))
    # state
    wl = WritableLayer.initialize(tmp_path / "wl", parents=mid)
    with pytest.raises(errors.AlreadyExistsError):
        WritableLayer.initialize(tmp_path / "wl", parents=mid)
    with pytest.raises(errors.InvalidStateError):
        wl.detach()
    with pytest.raises(errors.InvalidArgumentError):
        storage.attach_layer_storage_filter(wl.path, base.chain)  # not the chain it was made with
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(errors.DirectoryNotEmptyError):
        mid.export(tmp_path / "full")
    with pytest.raises(errors.DirectoryNotEmptyError):
        Layer.import_from(tmp_path / "s-base", tmp_path / "full")
    with pytest.raises(errors.InvalidJsonError):
        hcs.hcs_export_layer(str(mid.path), str(tmp_path / "x"), ld(base.path), '{"IsWritableLayer": 3}')
    with pytest.raises(errors.InvalidJsonError):
        hcs.hcs_setup_base_os_layer(str(base.path), 0, '{"Type": "Hologram"}')
    with pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_setup_base_os_layer(str(base.path), 0, '{"Type": "Vm"}')
    # every error is an HcsError with its code
    try:
        hcs.hcs_destroy_layer(missing)
    except errors.HcsError as exc:
        assert exc.hresult == 0x80070003 and exc.name == "ERROR_PATH_NOT_FOUND"


def test_path_escapes_refused(api: ModuleType, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious")
    # Files as a symlink to a folder outside
    src = tmp_path / "src"
    src.mkdir()
    (src / "Files").symlink_to(outside)
    with pytest.raises(errors.InvalidLayerError):
        storage.import_layer(tmp_path / "l", src)
    # tombstones that climb out
    for i, bad in enumerate([b"../outside/victim", b"a/../../outside/victim", b"/abs", b"%2E%2E/x", b"x//y"]):
        s = tmp_path / f"t{i}"
        (s / "Files").mkdir(parents=True)
        (s / "tombstones.txt").write_bytes(bad + b"\n")
        with pytest.raises(errors.InvalidLayerError):
            storage.import_layer(tmp_path / f"lt{i}", s)
        assert not (tmp_path / f"lt{i}").exists()
    # a symlink inside a layer is copied as a symlink, never followed
    s = tmp_path / "s-link"
    (s / "Files").mkdir(parents=True)
    (s / "Files" / "esc").symlink_to(outside)
    lay = Layer.import_from(s, tmp_path / "l-link")
    assert (lay.path / "Files" / "esc").is_symlink()
    # a tombstone through that symlink, in a layer above, deletes nothing outside
    s2 = tmp_path / "s-above"
    (s2 / "Files").mkdir(parents=True)
    write_tombstones(s2, {b"esc/victim"})
    above = Layer.import_from(s2, tmp_path / "l-above", parents=lay)
    wl = WritableLayer.initialize(tmp_path / "wl", parents=above)
    with wl.attached() as v:
        (v / "esc").unlink()
    assert (outside / "victim").read_text() == "precious"
    for x in (wl, above, lay):
        x.destroy()
    assert (outside / "victim").read_text() == "precious"
    # '..' in argument paths: the C side refuses them (pyhcs makes paths absolute first)
    with pytest.raises(errors.InvalidArgumentError):
        api.hcs_destroy_layer(f"{tmp_path}/x/../outside")
    assert outside.exists()


def test_setup_base_os_and_vhds(api: ModuleType, tmp_path: Path) -> None:
    src = tmp_path / "os"
    (src / "Files" / "Windows").mkdir(parents=True)
    (src / "UtilityVM" / "Files" / "EFI").mkdir(parents=True)
    (src / "UtilityVM" / "Files" / "EFI" / "boot.efi").write_bytes(b"efi")
    base = Layer.import_from(src, tmp_path / "base")
    with open(tmp_path / "SystemTemplateBase.vhdx", "w+b") as vhd:
        with pytest.raises(errors.HcsError) as ei:
            storage.get_layer_vhd_mount_path(vhd)
        assert ei.value.hresult == 0x800703ED  # ERROR_UNRECOGNIZED_VOLUME: not formatted
        storage.format_writable_layer_vhd(vhd)
        mount = storage.get_layer_vhd_mount_path(vhd)
        assert mount == storage.get_layer_vhd_mount_path(vhd.fileno()) and Path(mount).is_dir()
        base.setup_base_os(vhd, options={"Type": "Vm", "SkipUpdateBcdForBoot": True})
        assert (Path(mount) / "EFI" / "boot.efi").read_bytes() == b"efi"
        # re-format: a new, empty volume
        storage.format_writable_layer_vhd(vhd)
        assert storage.get_layer_vhd_mount_path(vhd) != mount and not Path(mount).exists()
    with pytest.raises(errors.InvalidHandleError):
        storage.format_writable_layer_vhd(987654)
    with pytest.raises(errors.InvalidHandleError):
        api.hcs_get_layer_vhd_mount_path(0)
    r, w = os.pipe()
    try:
        with pytest.raises(errors.InvalidArgumentError):
            storage.format_writable_layer_vhd(w)
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / "ro.vhdx", "w") as f:
        f.write("x")
    with open(tmp_path / "ro.vhdx", "rb") as ro, pytest.raises(errors.Win32AccessDeniedError):
        storage.format_writable_layer_vhd(ro)
    with pytest.raises(TypeError):
        storage.format_writable_layer_vhd("not a handle")  # type: ignore[arg-type]  # on purpose
    # SetupBaseOSVolume onto a volume directory
    src2 = tmp_path / "os2"
    (src2 / "Files").mkdir(parents=True)
    b2 = Layer.import_from(src2, tmp_path / "base2")
    vol = tmp_path / "volume"
    vol.mkdir()
    b2.setup_base_os_volume(vol, options=schema.OsLayerOptions(Type="Container"))
    assert (b2.path / "layout").exists() and (vol / "hcsemu-base-os.json").exists()
    with pytest.raises(errors.AlreadyExistsError):
        b2.setup_base_os_volume(vol)
    with pytest.raises(errors.InvalidLayerError):
        Layer.import_from(src2, tmp_path / "base3").setup_base_os_volume(vol, options={"Type": "Vm"})


def test_legacy_writable_layer(api: ModuleType, chain: tuple[Layer, Layer], tmp_path: Path) -> None:
    _, mid = chain
    with open(tmp_path / "sandbox.vhdx", "w+b") as vhd:
        storage.format_writable_layer_vhd(vhd)
        mount = storage.get_layer_vhd_mount_path(vhd)
    wl = WritableLayer.initialize_legacy(mount, tmp_path / "folder", parents=mid, options={"PreExpand": []})
    with pytest.raises(errors.AlreadyExistsError):
        WritableLayer.initialize_legacy(mount, tmp_path / "folder", parents=mid)
    with wl.attached() as v:
        (v / "legacy").write_text("L")
    (tmp_path / "exp").mkdir()
    wl.export(tmp_path / "exp")
    assert (tmp_path / "exp" / "Files" / "legacy").read_text() == "L"
    assert (tmp_path / "exp" / "Hives").is_dir()
    reopened = WritableLayer.open(mount)
    assert reopened.legacy_folder == tmp_path / "folder"
    (tmp_path / "exp2").mkdir()
    with pytest.raises(errors.InvalidLayerError):
        storage.export_legacy_writable_layer(mount, mid.path, tmp_path / "exp2", mid.chain)


def test_fault_injection_reaches_storage(api: ModuleType, tmp_path: Path) -> None:
    rawutil.add_faults(api, {"Function": "HcsDestroyLayer", "HResult": "0x80070005", "Count": 1})
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.Win32AccessDeniedError):
        storage.destroy_layer(tmp_path / "empty")
    storage.destroy_layer(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    rawutil.set_switches(api, LegacyErrorForms=True)
    (tmp_path / "junk" / "x").mkdir(parents=True)
    with pytest.raises(errors.InvalidLayerError) as ei:
        storage.destroy_layer(tmp_path / "junk")
    assert ei.value.hresult == 0xC0370112
