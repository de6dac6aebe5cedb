"""accel.train: Checkpoint / CheckpointManager / latest_checkpoint with tf.train's semantics, and the file's
safety (validated before any assignment, atomic writes)."""

import gc
import json
import os
import pathlib
import warnings
import zipfile

import numpy as np
import pytest

import accel
from accel import errors, train
from accel.keras import Sequential
from accel.keras.layers import Dense

X = np.random.RandomState(0).randn(16, 3).astype(np.float32)
Y = np.random.RandomState(1).randn(16, 2).astype(np.float32)

OPTIMIZERS = {
    "sgd_momentum": lambda: accel.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: accel.optimizers.Adam(0.01),
    "adamw": lambda: accel.optimizers.AdamW(0.01, weight_decay=0.1),
    "nadam": lambda: accel.optimizers.Nadam(0.01),
    "rmsprop": lambda: accel.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: accel.optimizers.Adagrad(0.1),
    "adam_ema": lambda: accel.optimizers.Adam(0.01, use_ema=True),
}


@pytest.fixture(autouse=True)
def _one_update_path():
    # in fused mode "auto" the optimizers switch to the numba twins once numba has warmed up in the background,
    # mid-run, which changes the last bits; exact comparisons of two runs need one path throughout
    with accel.config.fused("never"):
        yield


def make_model():
    return Sequential([Dense(5, activation="tanh"), Dense(2)])


def step(model, opt):
    with accel.GradientTape() as tape:
        loss = accel.reduce_mean(accel.square(model(X) - Y))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return float(loss)


def values(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def trained(opt_name, steps=3):
    model, opt = make_model(), OPTIMIZERS[opt_name]()
    for _ in range(steps):
        step(model, opt)
    return model, opt


# ---- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fresh", ["unbuilt", "built"])
def test_continuing_training_after_restore_matches_uninterrupted(tmp_path, opt_name, fresh):
    model, opt = trained(opt_name)
    path = train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    uninterrupted = [step(model, opt) for _ in range(3)]

    model2, opt2 = make_model(), OPTIMIZERS[opt_name]()
    if fresh == "built":  # variables and slots exist, with other values, before the restore
        for _ in range(2):
            step(model2, opt2)
    status = train.Checkpoint(model=model2, optimizer=opt2).restore(path)
    if fresh == "built":
        status.assert_consumed()
    resumed = [step(model2, opt2) for _ in range(3)]
    assert resumed == uninterrupted
    for a, b in zip(values(model.weights + opt.variables), values(model2.weights + opt2.variables)):
        np.testing.assert_array_equal(a, b)
    assert int(opt2.iterations.numpy()) == 6
    status.assert_consumed()


def test_deferred_restoration_waits_for_layers_and_slots(tmp_path):
    model, opt = trained("adam")
    path = train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    model2, opt2 = make_model(), OPTIMIZERS["adam"]()
    status = train.Checkpoint(model=model2, optimizer=opt2).restore(path)
    assert int(opt2.iterations.numpy()) == 3  # existing objects are restored at once
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="model/dense/kernel"):
        status.assert_consumed()
    model2(X)  # builds the layers: their weights take the saved values as they are created
    for a, b in zip(values(model.weights), values(model2.weights)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="OPTIMIZER_SLOT/optimizer/m"):
        status.assert_consumed()
    opt2.build(model2.trainable_variables)  # creates the slots, which take the saved values
    for a, b in zip(values(opt.variables), values(opt2.variables)):
        np.testing.assert_array_equal(a, b)
    status.assert_consumed()


def test_status_is_kept_alive_by_the_objects_not_by_the_caller(tmp_path):
    model, opt = trained("adam")
    path = train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    model2 = make_model()
    train.Checkpoint(model=model2).restore(path).expect_partial()  # neither Checkpoint nor status is kept
    gc.collect()
    model2(X)
    for a, b in zip(values(model.weights), values(model2.weights)):
        np.testing.assert_array_equal(a, b)


def test_module_variables_lists_dicts_and_nested_checkpoints(tmp_path):
    class Net(accel.Module):
        def __init__(self):
            super().__init__()
            self.w = accel.Variable(np.arange(6.0).reshape(2, 3))
            self.blocks = [{"b": accel.Variable([1.0, 2.0])}]

    net, v = Net(), accel.Variable(5, dtype=accel.int32)
    extra = [accel.Variable(1.5), accel.Variable([3.0])]
    ckpt = train.Checkpoint(net=net, inner=train.Checkpoint(v=v), extra=extra)
    path = ckpt.write(str(tmp_path / "state"))
    assert path == str(tmp_path / "state")
    before = values(net.variables) + values([v] + extra)
    for var in list(net.variables) + [v] + extra:
        var.assign(np.zeros(var.shape, var.dtype.name))
    ckpt.read(path).assert_consumed()
    for a, b in zip(before, values(net.variables) + values([v] + extra)):
        np.testing.assert_array_equal(a, b)
    with zipfile.ZipFile(path + ".npz") as zf:
        keys = {e["key"] for e in json.loads(zf.read("index.json"))["values"]}
    assert keys == {"net/w", "net/blocks/0/b", "inner/v", "extra/0", "extra/1"}


def test_model_optimizer_attribute_is_saved(tmp_path):
    model = make_model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    path = train.Checkpoint(model=model).write(str(tmp_path / "m"))
    model2 = make_model()
    model2.compile(optimizer="adam", loss="mse")
    status = train.Checkpoint(model=model2).read(path)
    model2(X)
    model2.optimizer.build(model2.trainable_variables)
    status.assert_consumed()
    assert int(model2.optimizer.iterations.numpy()) == 2


@pytest.mark.parametrize("bad", [1, "text", [accel.Variable(1.0), 2.0], {"a": None}])
def test_non_trackable_values_are_rejected(bad):
    with pytest.raises(ValueError, match="trackable"):
        train.Checkpoint(x=bad)


# ---- save counter, save / write / read -----------------------------------------------------------------


def test_save_counter_numbers_saves_and_is_restored(tmp_path):
    v = accel.Variable(1.0)
    ckpt = train.Checkpoint(v=v)
    assert int(ckpt.save_counter.numpy()) == 0
    prefix = str(tmp_path / "ckpt")
    assert [ckpt.save(prefix) for _ in range(3)] == [prefix + "-1", prefix + "-2", prefix + "-3"]
    assert ckpt.write(str(tmp_path / "plain")) == str(tmp_path / "plain")
    assert int(ckpt.save_counter.numpy()) == 3  # write() does not count
    ckpt.restore(prefix + "-2").assert_consumed()
    assert int(ckpt.save_counter.numpy()) == 2
    assert ckpt.save(prefix) == prefix + "-3"
    assert train.latest_checkpoint(str(tmp_path)) == prefix + "-3"


def test_read_does_not_create_the_save_counter(tmp_path):
    v = accel.Variable(2.0)
    path = train.Checkpoint(v=v).save(str(tmp_path / "c"))
    ckpt = train.Checkpoint(v=accel.Variable(0.0))
    status = ckpt.read(path)
    status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="save_counter"):
        status.assert_consumed()
    assert int(ckpt.save_counter.numpy()) == 1  # created now: the deferred value arrives
    status.assert_consumed()


def test_restore_none_and_missing_paths(tmp_path):
    status = train.Checkpoint(v=accel.Variable(1.0)).restore(None)
    for check in (status.assert_consumed, status.assert_existing_objects_matched, status.assert_nontrivial_match):
        with pytest.raises(AssertionError, match="save_path=None"):
            check()
    with pytest.raises(errors.NotFoundError, match="-1"):
        train.Checkpoint(v=accel.Variable(1.0)).restore(str(tmp_path / "nothing"))


def test_assertions_name_what_is_unmatched(tmp_path):
    path = train.Checkpoint(alpha=accel.Variable(1.0)).write(str(tmp_path / "c"))
    ckpt = train.Checkpoint(beta=accel.Variable(1.0))
    status = ckpt.read(path).expect_partial()
    with pytest.raises(AssertionError, match="Unresolved values .*: alpha"):
        status.assert_consumed()
    with pytest.raises(AssertionError, match="not matched with checkpointed values: beta"):
        status.assert_existing_objects_matched()
    with pytest.raises(AssertionError, match="No checkpointed value"):
        status.assert_nontrivial_match()


@pytest.mark.parametrize("partial", [False, True])
def test_expect_partial_silences_the_unrestored_warning(tmp_path, partial):
    path = train.Checkpoint(a=accel.Variable(1.0), b=accel.Variable(2.0)).write(str(tmp_path / "c"))
    a = accel.Variable(0.0)
    ckpt = train.Checkpoint(a=a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = ckpt.read(path)
        if partial:
            status.expect_partial()
        del status
        gc.collect()
        assert caught == []  # the objects still live: "b" may yet be created
        del ckpt, a
        gc.collect()
    messages = [str(w.message) for w in caught]
    if partial:
        assert messages == []
    else:
        assert len(messages) == 1 and "never restored: b." in messages[0] and "expect_partial" in messages[0]


def test_newer_restore_replaces_older_deferred_values(tmp_path):
    m1, m2 = make_model(), make_model()
    m1(X)
    m2(X)
    p1 = train.Checkpoint(model=m1).write(str(tmp_path / "one"))
    p2 = train.Checkpoint(model=m2).write(str(tmp_path / "two"))
    fresh = make_model()
    ckpt = train.Checkpoint(model=fresh)
    ckpt.read(p1).expect_partial()
    ckpt.read(p2).expect_partial()
    fresh(X)
    for a, b in zip(values(m2.weights), values(fresh.weights)):
        np.testing.assert_array_equal(a, b)


# ---- errors leave every variable unchanged ---------------------------------------------------------------


def _saved_model(tmp_path):
    model, opt = trained("adam")
    path = train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    return path, path + ".npz"


def _truncate(file):
    data = pathlib.Path(file).read_bytes()
    pathlib.Path(file).write_bytes(data[: len(data) // 2])


def _flip_byte(file):
    data = bytearray(pathlib.Path(file).read_bytes())
    with zipfile.ZipFile(file) as zf:
        info = zf.getinfo("3.npy")
    data[info.header_offset + 30 + len(info.filename) + 140] ^= 0xFF  # inside that member's data
    pathlib.Path(file).write_bytes(bytes(data))


def _rewrite_index(change):
    def edit(file):
        with zipfile.ZipFile(file) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        index = json.loads(members["index.json"])
        change(index)
        members["index.json"] = json.dumps(index).encode()
        with zipfile.ZipFile(file, "w") as zf:
            for n, d in members.items():
                zf.writestr(n, d)

    return edit


def _huge_shape(index):
    index["values"][3]["shape"] = [1 << 20, 1 << 20]


def _pickle_dtype(index):
    index["values"][3]["dtype"] = "O"


def _other_format(index):
    index["format"] = "something else"


def _garbage(file):
    pathlib.Path(file).write_bytes(b"not a zip file at all" * 10)


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (_truncate, "not a valid checkpoint"),
        (_flip_byte, "not a valid checkpoint"),
        (_garbage, "not a valid checkpoint"),
        (_rewrite_index(_huge_shape), "needs"),
        (_rewrite_index(_pickle_dtype), "not a plain numeric type"),
        (_rewrite_index(_other_format), "not an accel checkpoint"),
    ],
)
def test_corrupt_files_raise_naming_the_file_and_change_nothing(tmp_path, corrupt, match):
    path, file = _saved_model(tmp_path)
    corrupt(file)
    model, opt = trained("adam", steps=2)
    before = values(model.weights + opt.variables)
    with pytest.raises(errors.DataLossError, match=match) as e:
        train.Checkpoint(model=model, optimizer=opt).restore(path)
    assert file in str(e.value)
    for a, b in zip(before, values(model.weights + opt.variables)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_model_names_the_key_and_changes_nothing(tmp_path):
    path, _ = _saved_model(tmp_path)
    other = Sequential([Dense(5, activation="tanh"), Dense(3)])  # the last layer differs
    opt = accel.optimizers.Adam(0.01)
    other(X)
    before = values(other.weights)
    mismatch = r"model/dense_1/kernel: the checkpoint has float32 \(5, 2\).*float32 \(5, 3\)"
    with pytest.raises(ValueError, match=mismatch):
        train.Checkpoint(model=other, optimizer=opt).restore(path)
    for a, b in zip(before, values(other.weights)):  # dense (which matched) is unchanged too
        np.testing.assert_array_equal(a, b)
    assert int(opt.iterations.numpy()) == 0


def test_deferred_mismatch_raises_when_the_variable_is_created(tmp_path):
    path, _ = _saved_model(tmp_path)
    other = Sequential([Dense(5, activation="tanh"), Dense(3)])
    train.Checkpoint(model=other).restore(path).expect_partial()
    with pytest.raises(ValueError, match="model/dense_1/kernel"):
        other(X)


def test_dtype_mismatch(tmp_path):
    path = train.Checkpoint(v=accel.Variable([1.0, 2.0], dtype=accel.float64)).write(str(tmp_path / "c"))
    v = accel.Variable([0.0, 0.0])
    with pytest.raises(ValueError, match=r"v: the checkpoint has float64 \(2,\)"):
        train.Checkpoint(v=v).read(path)
    np.testing.assert_array_equal(v.numpy(), [0.0, 0.0])


# ---- files: atomicity, folders -------------------------------------------------------------------------------


def test_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    v = accel.Variable([1.0, 2.0])
    w = accel.Variable(3.0)
    ckpt = train.Checkpoint(v=v, w=w)
    prefix = str(tmp_path / "c")
    ckpt.write(prefix)
    original = pathlib.Path(prefix + ".npz").read_bytes()
    v.assign([5.0, 6.0])
    real = train._write_member

    def failing(zf, name, array):
        if name == "1.npy":  # the first member is written, the second fails
            raise OSError("disk full")
        real(zf, name, array)

    monkeypatch.setattr(train, "_write_member", failing)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write(prefix)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(prefix)
    assert int(ckpt.save_counter.numpy()) == 0  # the failed save is not counted
    assert pathlib.Path(prefix + ".npz").read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temporary file left behind
    monkeypatch.undo()
    ckpt.read(prefix).assert_nontrivial_match()
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_missing_folders_are_created(tmp_path):
    ckpt = train.Checkpoint(v=accel.Variable(1.0))
    path = ckpt.save(str(tmp_path / "a" / "b" / "ckpt"))
    assert os.path.isfile(path + ".npz")
    assert train.latest_checkpoint(str(tmp_path / "a" / "b")) == path
    manager = train.CheckpointManager(ckpt, str(tmp_path / "m" / "n"), max_to_keep=1)
    assert os.path.isfile(manager.save() + ".npz")


def test_save_weights_creates_missing_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = make_model()
    model(X)
    model.save_weights("ckpt/model")
    other = make_model()
    other(X)
    other.load_weights("ckpt/model")
    for a, b in zip(values(model.weights), values(other.weights)):
        np.testing.assert_array_equal(a, b)


# ---- CheckpointManager and latest_checkpoint ---------------------------------------------------------------


def _names(paths):
    return [os.path.basename(p) for p in paths]


@pytest.mark.parametrize(
    "max_to_keep, saves, kept",
    [
        (2, 5, ["ckpt-4", "ckpt-5"]),
        (1, 3, ["ckpt-3"]),
        (5, 3, ["ckpt-1", "ckpt-2", "ckpt-3"]),
        (None, 4, ["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"]),
    ],
)
def test_manager_keeps_the_newest(tmp_path, max_to_keep, saves, kept):
    v = accel.Variable(0.0)
    manager = train.CheckpointManager(train.Checkpoint(v=v), str(tmp_path), max_to_keep=max_to_keep)
    assert manager.latest_checkpoint is None and manager.checkpoints == []
    for i in range(saves):
        v.assign(float(i))
        manager.save()
    assert _names(manager.checkpoints) == kept
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz")) == sorted(k + ".npz" for k in kept)
    assert manager.latest_checkpoint == train.latest_checkpoint(str(tmp_path)) == manager.checkpoints[-1]
    # a new manager in the same folder takes the list over and keeps sweeping it
    again = train.CheckpointManager(train.Checkpoint(v=v), str(tmp_path), max_to_keep=max_to_keep)
    assert again.checkpoints == manager.checkpoints
    ckpt = train.Checkpoint(v=accel.Variable(-1.0))
    ckpt.restore(again.latest_checkpoint).assert_consumed()
    assert float(ckpt.v.numpy()) == saves - 1


def test_manager_checkpoint_number_and_overwrite(tmp_path):
    manager = train.CheckpointManager(train.Checkpoint(v=accel.Variable(0.0)), str(tmp_path), max_to_keep=2,
                                      checkpoint_name="model")
    assert _names([manager.save(checkpoint_number=10), manager.save(checkpoint_number=20)]) == ["model-10", "model-20"]
    manager.save(checkpoint_number=10)  # overwritten: moves to the end of the queue
    assert _names(manager.checkpoints) == ["model-20", "model-10"]
    assert os.path.basename(train.latest_checkpoint(str(tmp_path))) == "model-10"


def test_manager_keep_every_n_hours(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(train, "_now", lambda: clock[0])
    manager = train.CheckpointManager(train.Checkpoint(v=accel.Variable(0.0)), str(tmp_path), max_to_keep=1,
                                      keep_checkpoint_every_n_hours=1)
    for t in (1000.0, 1000.0 + 1800, 1000.0 + 4000, 1000.0 + 4100):
        clock[0] = t
        manager.save()
    # leaving the active set, a checkpoint is kept if written an hour after the last one kept (the manager
    # starts the clock a second before its creation): ckpt-1 and ckpt-2 are not, ckpt-3 is
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz")) == ["ckpt-3.npz", "ckpt-4.npz"]
    assert _names(manager.checkpoints) == ["ckpt-4"]


def test_manager_interval_and_restore_or_initialize(tmp_path):
    step_var = accel.Variable(0, dtype=accel.int64)
    ckpt = train.Checkpoint(step=step_var)
    inits = []
    manager = train.CheckpointManager(ckpt, str(tmp_path), max_to_keep=3, step_counter=step_var,
                                      checkpoint_interval=5, init_fn=lambda: inits.append(1))
    assert manager.restore_or_initialize() is None and inits == [1]
    saved = []
    for s in range(12):
        step_var.assign(s)
        saved.append(manager.save())
    assert [os.path.basename(p) for p in saved if p] == ["ckpt-1", "ckpt-2", "ckpt-3"]
    assert [i for i, p in enumerate(saved) if p] == [0, 5, 10]
    with pytest.raises(ValueError, match="step_counter"):
        train.CheckpointManager(ckpt, str(tmp_path), checkpoint_interval=5)


@pytest.mark.parametrize("max_to_keep", [0, -1])
def test_manager_rejects_non_positive_max_to_keep(tmp_path, max_to_keep):
    with pytest.raises(ValueError, match="max_to_keep"):
        train.CheckpointManager(train.Checkpoint(), str(tmp_path), max_to_keep=max_to_keep)


def test_latest_checkpoint_edge_cases(tmp_path):
    assert train.latest_checkpoint(str(tmp_path / "missing")) is None
    assert train.latest_checkpoint(str(tmp_path)) is None
    path = train.Checkpoint(v=accel.Variable(1.0)).save(str(tmp_path / "ckpt"))
    assert train.latest_checkpoint(str(tmp_path)) == path
    os.remove(path + ".npz")
    assert train.latest_checkpoint(str(tmp_path)) is None  # recorded, but the file is gone
    (tmp_path / "checkpoint").write_text("{not json")
    with pytest.warns(UserWarning, match="checkpoint state ignored"):
        assert train.latest_checkpoint(str(tmp_path)) is None


def test_round_trip_on_each_device(tmp_path, device):
    model, opt = trained("adam")
    path = train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
    uninterrupted = [step(model, opt) for _ in range(2)]
    model2, opt2 = make_model(), OPTIMIZERS["adam"]()
    train.Checkpoint(model=model2, optimizer=opt2).restore(path).assert_existing_objects_matched()
    assert [step(model2, opt2) for _ in range(2)] == uninterrupted
    assert all(accel.backend.device_of(v._data).kind == device for v in model2.weights + opt2.variables[2:])
