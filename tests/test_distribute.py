"""kfcn.distribute on two logical CPU devices (TensorFlow) and two host devices (JAX), in subprocesses
(the device count must be set before the backend starts), and sharded folder prediction by two workers."""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from kfcn.distribute import parse_shard, shard
from tests.conftest import write_isbi_crops

pytestmark = pytest.mark.tensorflow_only(reason="starts its own backends")

# JAX's host devices meet in XLA's CPU collectives. Once in CI (2 cores) a step hung until the
# rendezvous timeout: "Expected 2 threads to join the rendezvous, but only 1 of them arrived". The
# likely cause is thread starvation: XLA sizes its CPU client's thread pools to max(cores, devices),
# two threads here, and a device blocked in an all-reduce holds one of them while the other
# device's program, or the intra-op tasks of its convolutions, wait for a thread. So the tests give
# the pools more threads than devices (NPROC, which XLA's DefaultThreadPoolSize reads) and run the
# convolutions single-threaded inside each device's program (--xla_cpu_multi_thread_eigen=false).
# The timeout, XLA's 40 s by default, is raised for a device slowed by a CPU-bound job beside the
# tests, yet kept short enough that a hang fails in minutes and names its test.
JAX_TWO_DEVICES = {
    "NPROC": "4",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false "
    "--xla_cpu_collective_timeout_seconds=180 --xla_cpu_collective_call_terminate_timeout_seconds=180",
}

EPS = float(np.finfo(np.float32).eps)
BATCH_PIXELS = 4 * 32 * 32  # the training batch of SCRIPT: 4 crops of 32 x 32
# Two replicas split every float32 sum over the batch's pixels (the loss, its gradients) in two
# and add the halves: the same terms in another order. Such a sum of n terms changes by at most
# (n - 1)·ε·Σ|terms| (Higham, Accuracy and Stability of Numerical Algorithms, §4.2), i.e. by at
# most n·ε relative where the terms share a sign (the losses' terms are >= 0). 4096·ε = 4.9e-4.
REORDERED_SUM_RTOL = BATCH_PIXELS * EPS

SETUP = {
    "tensorflow": """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """,
    "jax": "",
}

# One training step of a U-Net with the weighted CE + j2 on crops with U-Net weight maps, on one
# device and on two; then the whole-evaluation metrics, tiled prediction and a checkpoint.
SCRIPT = """
    import json, keras, numpy as np, tensorflow as tf
    import kfcn, kfcn.distribute
    from kfcn.data import random_crop_pipeline

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 48, 48, 1)).astype("float32")
    labels = np.ones((3, 48, 48, 1), "int32")
    labels[:, 20:23] = 0
    labels[:, :, 30:32] = 0
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    batches = random_crop_pipeline(pairs, 32, batch_size=4, weight_map="unet", seed=0)
    x, y, w = next(iter(batches))

    def build():
        keras.utils.set_random_seed(0)
        model = kfcn.models.unet((None, None, 1), num_classes=1, filters=4, depth=2)
        loss = kfcn.losses.CompoundLoss([keras.losses.BinaryCrossentropy(), kfcn.losses.JaccardJ2Loss()])
        scores = [kfcn.metrics.DiceScore(2, class_ids=[1], name="dice"), kfcn.metrics.PixelError(2)]
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, metrics=scores)
        return model

    def step(model):
        model.fit(x.numpy(), y.numpy(), sample_weight=w.numpy(), batch_size=4, epochs=1, verbose=0, shuffle=False)
        return model

    initial = build().get_weights()
    one = step(build())
    image = rng.integers(0, 256, (70, 60)).astype("uint8")
    with kfcn.distribute.data_parallel() as replicas:
        two = step(build())
        scores_two = two.evaluate(x.numpy(), y.numpy(), batch_size=4, verbose=0, return_dict=True)
        tiles_two = kfcn.inference.predict_tiled(two, image, 32, overlap=8, batch_size=3, progress=False)
        kfcn.saving.save_model(two, "two.keras")
        if keras.backend.backend() == "tensorflow":
            # The pipeline under the strategy: every crop of the global batch once, split among replicas.
            strategy = tf.distribute.get_strategy()
            first = next(iter(strategy.experimental_distribute_dataset(batches)))
            parts = strategy.experimental_local_results(first[0])
            split = [int(p.shape[0]) for p in parts]
            same_crops = bool(np.array_equal(np.concatenate([p.numpy() for p in parts]), x.numpy()))
        else:
            split, same_crops = [2, 2], True
    same = build()  # the two-replica weights on one device: what aggregation alone changes
    same.set_weights(two.get_weights())
    scores_same = same.evaluate(x.numpy(), y.numpy(), batch_size=4, verbose=0, return_dict=True)
    loaded = kfcn.saving.load_model("two.keras")
    kernels = [w for w in one.get_weights() if w.ndim == 4]
    print(json.dumps({
        "replicas": replicas,
        "weights": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), two.get_weights())),
        "step": max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), initial)),
        "scores": {k: [scores_two[k], scores_same[k]] for k in scores_same},
        "foreground": int(y.numpy().sum()),
        "fan_in": int(sum(np.prod(k.shape[:-1]) for k in kernels)),
        "tiles": float(np.abs(tiles_two - kfcn.inference.predict_tiled(same, image, 32, overlap=8, progress=0)).max()),
        "checkpoint": float(np.abs(kfcn.inference.predict(loaded, image) - kfcn.inference.predict(two, image)).max()),
        "split": split,
        "same_crops": same_crops,
    }))
"""


# Prints why data_parallel refuses (it must refuse: nothing is printed otherwise).
REFUSAL_PROBE = """
    import kfcn.distribute
    try:
        with kfcn.distribute.data_parallel():
            pass
    except NotImplementedError as error:
        print(error)
"""


def run_python(code, backend, cwd, extra_env=None):
    environment = os.environ | {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"} | (extra_env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environment, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_devices_train_evaluate_and_predict_like_one(backend, tmp_path):
    flags = JAX_TWO_DEVICES if backend == "jax" else {}
    out = run_python(textwrap.dedent(SETUP[backend]) + textwrap.dedent(SCRIPT), backend, tmp_path, flags)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["split"] == [2, 2] and result["same_crops"], result
    # One SGD step from identical weights: the update is the learning rate times gradients whose
    # sums over the batch's pixels the replicas reorder (first order: relative REORDERED_SUM_RTOL).
    assert result["weights"] <= REORDERED_SUM_RTOL * result["step"], result
    # Evaluation of the same weights on two replicas and on one. The loss is a mean of
    # non-negative terms: within n·ε relative. Pixel error and Dice count pixels (exact in
    # float32); only a probability within rounding of the threshold could land on the other
    # side: at most one pixel, 1/n of the pixel error and 2/|truth| of 2·TP/(|truth| + |pred|).
    (loss_two, loss_one), (error_two, error_one), (dice_two, dice_one) = (
        result["scores"][key] for key in ("loss", "pixel_error", "dice")
    )
    assert abs(loss_two - loss_one) <= REORDERED_SUM_RTOL * loss_one, result
    assert abs(error_two - error_one) <= 1 / BATCH_PIXELS, result
    assert abs(dice_two - dice_one) <= 2 / result["foreground"], result
    # Tiled prediction of the same weights with the tiles split between replicas: each output pixel
    # is a chain of convolutions whose dot products (fan-in K per layer) may be reordered by another
    # batch size's kernel: to first order within Σ K·ε of probabilities in [0, 1].
    assert result["tiles"] <= result["fan_in"] * EPS, result
    assert result["checkpoint"] == 0.0, result  # the same weights, the same operations, one device


def test_a_backup_from_two_replicas_resumes_on_one(tmp_path):
    code = (
        SETUP["tensorflow"]
        + """
        import keras, numpy as np, kfcn, kfcn.distribute

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    raise RuntimeError("crash")

        x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype("float32")
        y = (x > 128).astype("float32")
        def build():
            model = kfcn.models.unet((None, None, 1), num_classes=1, filters=2, depth=2)
            model.compile(optimizer="adam", loss="bce")
            return model
        backup = keras.callbacks.BackupAndRestore("backup")
        with kfcn.distribute.data_parallel():
            try:
                build().fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[backup, Crash()])
            except RuntimeError:
                pass
        history = build().fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[backup])
        print(history.epoch)
    """
    )
    assert run_python(code, "tensorflow", tmp_path).strip().splitlines()[-1] == "[1, 2]"


def test_pytorch_says_what_keras_does_not_support(tmp_path):
    assert "no multi-device training" in run_python(REFUSAL_PROBE, "torch", tmp_path)


def test_shards_cover_every_item_once():
    items = list(range(11))
    shares = [shard(items, index, 3) for index in range(3)]
    assert sorted(sum(shares, [])) == items and {len(s) for s in shares} <= {3, 4}
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_two_workers_killed_and_restarted_write_what_one_process_writes(tmp_path):
    from kfcn.models import unet
    from kfcn.saving import save_model

    save_model(unet((None, None, 1), num_classes=1, filters=8, depth=2), tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for index in range(12):
        Image.fromarray(rng.integers(0, 256, (192, 192), dtype=np.uint8)).save(tmp_path / "in" / f"{index:02d}.png")

    def command(output, *options):
        arguments = ["predict", tmp_path / "in", "--model", tmp_path / "model.keras", "--output", output, *options]
        return [sys.executable, "-m", "kfcn.cli", *map(str, arguments)]

    environment = os.environ | {"KERAS_BACKEND": "tensorflow"}
    subprocess.run(command(tmp_path / "single"), check=True, env=environment, capture_output=True)
    sharded = tmp_path / "sharded"
    first = subprocess.Popen(command(sharded, "--shard", "0/2"), env=environment, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(sharded.glob("*_overlay.png")) and time.time() < deadline:
        time.sleep(0.01)
    first.kill()  # SIGKILL: no clean-up runs
    first.wait()
    written = {p.name for p in sharded.iterdir()}
    assert len(written) < 12, "worker 0 finished before it could be killed"
    subprocess.run(command(sharded, "--shard", "1/2"), check=True, env=environment, capture_output=True)
    subprocess.run(
        command(sharded, "--shard", "0/2", "--skip-existing"), check=True, env=environment, capture_output=True
    )
    outputs = sorted(p.name for p in sharded.iterdir())
    assert outputs == sorted(p.name for p in (tmp_path / "single").iterdir())  # no partial files left either
    for name in outputs:
        assert (sharded / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name


def test_kfcn_train_on_all_devices_under_jax(tmp_path):
    write_isbi_crops(tmp_path, count=3, side=40)
    arguments = ["train", "--images", "images", "--labels", "labels", "--output", "run", "--devices", "all"]
    arguments += ["--filters", "2", "--depth", "2", "--crop", "32", "--batch", "4", "--epochs", "1", "--steps", "2"]
    odd = [*arguments[:-6], "--batch", "3", "--epochs", "1", "--steps", "2", "--output", "odd"]
    environment = os.environ | {"KERAS_BACKEND": "jax"} | JAX_TWO_DEVICES
    # Both commands at once: the refused one is mostly Python importing JAX and TensorFlow, on one core.
    refused = subprocess.Popen(
        [sys.executable, "-m", "kfcn.cli", *odd],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = subprocess.run(
        [sys.executable, "-m", "kfcn.cli", *arguments], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    _, refusal = refused.communicate()
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["backend"] == "jax"
    assert refused.returncode == 2 and "multiple of the 2 devices" in refusal


JAX_WORKER = """
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras
    keras.distribution.initialize(f"localhost:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1]))
    import numpy as np, tensorflow as tf, kfcn, kfcn.distribute
    from kfcn.data import random_crop_pipeline

    with kfcn.distribute.data_parallel() as replicas:
        keras.utils.set_random_seed(0)
        model = kfcn.models.unet((None, None, 1), num_classes=1, filters=4, depth=2)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="bce")
        images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype("float32")
        pairs = tf.data.Dataset.from_tensor_slices((images, (images > 128).astype("int32")))
        model.fit(random_crop_pipeline(pairs, 32, batch_size=4, seed=0), epochs=1, steps_per_epoch=2, verbose=0)
    print(replicas, jax.process_count(), float(sum(np.abs(w).sum() for w in model.get_weights())))
"""


def test_two_jax_processes_train_one_model(tmp_path):
    """Several hosts, played by two processes on this machine: one global model, every process ends equal."""
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(JAX_WORKER))
    environment = os.environ | {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(index), str(port)], env=environment, stdout=subprocess.PIPE, text=True
        )
        for index in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=600)[0].strip().splitlines()[-1] for worker in workers]
    finally:  # a worker left waiting for its peer would outlive the test
        for worker in workers:
            worker.kill()
    assert all(worker.returncode == 0 for worker in workers)
    replicas, processes, weights = outputs[0].split()
    assert (replicas, processes) == ("2", "2") and outputs[0] == outputs[1]


def test_tensorflow_multi_worker_is_refused_with_the_reason(tmp_path):
    config = '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}'
    out = run_python(REFUSAL_PROBE, "tensorflow", tmp_path, {"TF_CONFIG": config})
    assert "keras-team/keras#20585" in out and "KERAS_BACKEND=jax" in out


def test_an_interrupted_two_replica_run_resumes_on_the_same_crops(tmp_path):
    code = (
        SETUP["tensorflow"]
        + """
        import json, keras, numpy as np, tensorflow as tf, kfcn, kfcn.distribute
        from kfcn.data import random_crop_pipeline
        from kfcn.training import read_log, standard_callbacks

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise RuntimeError("crash")

        images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype("float32")
        pairs = tf.data.Dataset.from_tensor_slices((images, (images > 128).astype("int32")))

        def run(folder, crash):
            with kfcn.distribute.data_parallel():
                keras.utils.set_random_seed(0)
                batches = random_crop_pipeline(pairs, 32, batch_size=4, seed=0, augment="geometric")
                model = kfcn.models.unet((None, None, 1), num_classes=1, filters=4, depth=2)
                model.compile(optimizer="adam", loss="bce")
                callbacks = standard_callbacks(folder, "loss", "min", crop_stream=batches)
                callbacks += [Crash()] if crash else []
                try:
                    model.fit(batches, epochs=3, steps_per_epoch=3, verbose=0, shuffle=False, callbacks=callbacks)
                except RuntimeError:
                    pass
            return read_log(f"{folder}/training.csv")["loss"].tolist()

        reference = run("reference", False)
        run("resumed", True)
        print(json.dumps([reference, run("resumed", False)]))
    """
    )
    reference, resumed = json.loads(run_python(code, "tensorflow", tmp_path).strip().splitlines()[-1])
    assert len(resumed) == 3 and resumed == reference, (reference, resumed)  # the same operations, bit for bit


MODEL_PARALLEL = """
    import json, jax, keras, numpy as np, kfcn

    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices=jax.devices())
    layout = keras.distribution.LayoutMap(mesh)
    layout["(encoder|decoder).*_conv.*kernel"] = (None, None, None, "model")  # output channels split in two
    layout["decoder.*_up_transpose/kernel"] = (None, None, None, "model")
    model_parallel = keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch")

    def build(family):
        keras.utils.set_random_seed(0)
        model = getattr(kfcn.models, family)((None, None, 1), num_classes=2, filters=4, depth=2, batch_norm=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        return model

    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    y = (x > 128).astype("int32")
    result = {}
    for family in ("unet", "segnet"):
        initial = build(family).get_weights()
        one = build(family)
        one.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        with model_parallel.scope():
            split = build(family)
            split.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
            sharded = sum(not v.value.sharding.is_fully_replicated for v in split.trainable_variables)
        difference = max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), split.get_weights()))
        step = max(float(np.abs(a - b).max()) for a, b in zip(one.get_weights(), initial))
        result[family] = [sharded, difference, step]
    print(json.dumps(result))
"""


def test_model_parallel_with_a_layout_map_trains_like_one_device(tmp_path):
    out = run_python(MODEL_PARALLEL, "jax", tmp_path, JAX_TWO_DEVICES).strip().splitlines()[-1]
    result = json.loads(out)
    for family, (sharded, difference, step) in result.items():
        # The split kernels' gradients add the output channels' halves in another order: one SGD
        # step from the same weights, reordered sums of at most BATCH_PIXELS terms (see above).
        assert sharded >= 8 and difference <= REORDERED_SUM_RTOL * step, (family, sharded, difference, step)
