"""A large image through the network engine: right size, every tile, and memory that stays bounded.

The bound is what the output itself needs (Pillow keeps RGB as 4 bytes per pixel) plus the input and the
tile budget: a float copy of the whole output (12 bytes per pixel) would break it.
"""

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import json, resource, sys
    import keras, numpy as np
    from worker.engine.archs import get_arch
    from worker.engine.network import NetworkConfig
    from worker.engine.network_engine import NetworkEngine

    folder = sys.argv[1]
    config = NetworkConfig(blocks=2, channels=16)
    model = get_arch("residual_sr").build(config)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.05, w.shape).astype("float32"))
    model.save_weights(f"{folder}/big.weights.h5")
    open(f"{folder}/big.json", "w").write(json.dumps({"name": "big", "arch": "residual_sr",
                                                      "network": config.to_dict()}))
    engine = NetworkEngine(f"{folder}/big.weights.h5", tile_size=256, memory_budget_mb=64)
    engine.upscale(np.zeros((64, 64, 3), np.uint8), 2)
    rgb = rng.integers(0, 256, (3001, 4003, 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tiles = []
    out = engine.upscale(rgb, 2, lambda done, total: tiles.append((done, total)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    corner = np.asarray(out.crop((0, 0, 8, 8)))
    print(json.dumps({"size": out.size, "mode": out.mode, "tiles": tiles[-1], "before": before, "peak": peak,
                      "corner_std": float(corner.std())}))
''')


@pytest.mark.slow
def test_twelve_megapixel_image_in_bounded_memory(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True,
                            timeout=600, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin",
                                              "PYTHONPATH": "."})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert tuple(report["size"]) == (8006, 6002) and report["mode"] == "RGB"
    done, total = report["tiles"]
    assert done == total == 13 * 17  # 240-px cores (256 minus an 8-px margin each side)
    output_bytes = 8006 * 6002 * 4
    input_bytes = 4003 * 3001 * 3
    growth = report["peak"] - report["before"]
    print(f"peak growth {growth / 2**20:.0f} MiB; output alone {output_bytes / 2**20:.0f} MiB")
    assert growth < output_bytes + 2 * input_bytes + 3 * 64 * 2**20 + 100 * 2**20, growth / 2**20
    assert report["corner_std"] > 0  # real content, not an empty canvas
