"""The data benchmarks run and print one JSON line (numbers are not asserted: shared CPUs)."""
import json

from handlib.bench import data as bench


def test_render_benchmark_prints_one_json_line(capsys):
    assert bench.main(["render", "--size", "32", "--sequences", "2", "--frames", "6", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["bench"] == "render" and out["size"] == 32 and out["frames"] == 12 and out["frames_per_s"] > 0


def test_cache_benchmark_reads_batches(capsys, tmp_path):
    argv = ["cache", "--preset", "smoke", "--cache-root", str(tmp_path), "--batch-size", "16", "--max-frames", "64",
            "--repeats", "1"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "cache" and out["frames"] >= 64 and out["frames_per_s"] > 0 and out["image_size"] == 64
