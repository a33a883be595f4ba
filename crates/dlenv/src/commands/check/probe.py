# dlenv check: what the framework in this environment sees. Prints one JSON object.
# Runs inside the container with the environment's Python; standard library only, and
# every framework is optional.
import json, platform, sys, time

out = {"python": platform.python_version(), "frameworks": []}


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, round((time.perf_counter() - t) * 1000, 3)


def cpu_matmul_pure(n=48):
    a = [[(i * n + j) % 7 / 7.0 for j in range(n)] for i in range(n)]
    b = [[(i + 2 * j) % 5 / 5.0 for j in range(n)] for i in range(n)]
    c = [[sum(a[i][k] * b[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    return sum(map(sum, c))


def report(name, version, **kw):
    d = {"name": name, "version": version, "cuda_available": False, "devices": [], "cpu": None, "error": None}
    d.update(kw)
    out["frameworks"].append(d)
    return d


try:
    import torch
    d = report("torch", torch.__version__, cuda_version=torch.version.cuda)
    def mm(dev):
        x = torch.ones((256, 256), device=dev)
        y = (x @ x).sum().item()
        if dev != "cpu":
            torch.cuda.synchronize()
        return y
    value, ms = timed(lambda: mm("cpu"))
    d["cpu"] = {"ok": value == 256.0 ** 3, "ms": ms}
    d["cuda_available"] = torch.cuda.is_available()
    if d["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            dev = {"index": i, "name": p.name, "capability": "%d.%d" % (p.major, p.minor),
                   "memory_mib": p.total_memory // (1 << 20), "ok": False, "ms": None, "error": None}
            try:
                value, ms = timed(lambda: mm("cuda:%d" % i))
                dev["ok"], dev["ms"] = value == 256.0 ** 3, ms
            except Exception as e:  # a kernel that does not run on this GPU, OOM, ...
                dev["error"] = str(e).splitlines()[0]
            d["devices"].append(dev)
except ImportError:
    pass
except Exception as e:
    report("torch", None, error=str(e).splitlines()[0])

try:
    import tensorflow as tf
    d = report("tensorflow", tf.__version__, cuda_version=tf.sysconfig.get_build_info().get("cuda_version"))
    def mm(dev):
        with tf.device(dev):
            x = tf.ones((256, 256))
            return float(tf.reduce_sum(tf.matmul(x, x)).numpy())
    value, ms = timed(lambda: mm("/CPU:0"))
    d["cpu"] = {"ok": value == 256.0 ** 3, "ms": ms}
    gpus = tf.config.list_physical_devices("GPU")
    d["cuda_available"] = bool(gpus)
    for i, g in enumerate(gpus):
        det = tf.config.experimental.get_device_details(g)
        cc = det.get("compute_capability")
        dev = {"index": i, "name": det.get("device_name", g.name),
               "capability": "%d.%d" % cc if cc else None, "memory_mib": None,
               "ok": False, "ms": None, "error": None}
        try:
            value, ms = timed(lambda: mm("/GPU:%d" % i))
            dev["ok"], dev["ms"] = value == 256.0 ** 3, ms
        except Exception as e:
            dev["error"] = str(e).splitlines()[0]
        d["devices"].append(dev)
except ImportError:
    pass
except Exception as e:
    report("tensorflow", None, error=str(e).splitlines()[0])

try:
    import jax, jax.numpy as jnp
    d = report("jax", jax.__version__)
    def mm(device):
        x = jax.device_put(jnp.ones((256, 256)), device)
        return float((x @ x).sum().block_until_ready())
    value, ms = timed(lambda: mm(jax.devices("cpu")[0]))
    d["cpu"] = {"ok": value == 256.0 ** 3, "ms": ms}
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    d["cuda_available"] = bool(gpus)
    for i, g in enumerate(gpus):
        dev = {"index": i, "name": getattr(g, "device_kind", str(g)),
               "capability": getattr(g, "compute_capability", None), "memory_mib": None,
               "ok": False, "ms": None, "error": None}
        try:
            value, ms = timed(lambda: mm(g))
            dev["ok"], dev["ms"] = value == 256.0 ** 3, ms
        except Exception as e:
            dev["error"] = str(e).splitlines()[0]
        d["devices"].append(dev)
except ImportError:
    pass
except Exception as e:
    report("jax", None, error=str(e).splitlines()[0])

if not out["frameworks"]:
    value, ms = timed(cpu_matmul_pure)
    out["cpu_python"] = {"ok": abs(value - cpu_matmul_pure()) < 1e-9, "ms": ms}

print(json.dumps(out))
sys.stdout.flush()
