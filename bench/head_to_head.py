"""Head-to-head: glstream against the moderngl script a user would write, same shader, same
Python consumer, alternating in one run (the machines are shared and noisy: alternating spreads
a noisy minute over every contender instead of one).

For each size, each round runs every contender once: a producer process serves FRAMES frames to
one consumer process (consumer.py) over loopback TCP (and glstream --shm to a Python iceoryx2 subscriber, for the shared-memory
goal). It prints fps (consumer side, after the
warm-up), CPU ms per frame of producer and consumer (getrusage of each process), how many of
the machine's cores the pair kept busy, the median of the rounds, and each contender's ratio to
the script.

It also prints the ceiling for any producer over TCP on this machine: every producer must at least
render and read back each frame (CPU ms per frame of `glstream bench`'s readback mode, the same
Mesa work the script does), and the consumer's CPU per frame is the consumer's own; with every core
busy and a free send, no producer can go faster than cores x 1000 / (readback + consumer) fps.

    bench/head-to-head.sh [--sizes 800x600,1920x1080] [--rounds 3] [--frames 600]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GLSTREAM = os.path.join(ROOT, "target", "release", "glstream")
SHADER = os.path.join(HERE, "plasma.frag")
PYTHON = sys.executable


def contenders(width, height, frames):
    size = ["--width", str(width), "--height", str(height)]
    common = [GLSTREAM, "-q", "--port", "0", "--scene", SHADER, "--frames", str(frames)] + size
    return [
        ("glstream", common),
        # The kernel's autotuned send buffer, glstream's default before --send-buffer auto.
        ("glstream --send-buffer system", common + ["--send-buffer", "system"]),
        ("glstream --pbo-count 1", common + ["--pbo-count", "1"]),
        ("glstream --policy lossless", common + ["--policy", "lossless"]),
        ("moderngl script", [PYTHON, os.path.join(HERE, "moderngl_producer.py"), SHADER,
                             str(width), str(height), str(frames)]),
        # Not over TCP: the same frames into the consumer's memory through shared memory.
        ("glstream --shm", common[:2] + ["--shm", "glstream/head-to-head"] + common[4:]),
    ]


def readback_cpu_ms(width, height):
    """CPU ms per frame to render and read back the shader, no output (glstream bench)."""
    out = subprocess.run([GLSTREAM, "-q", "bench", "--scene", SHADER, "--width", str(width),
                          "--height", str(height), "--pbo-counts", "2", "--transports", "tcp",
                          "--repeats", "3", "--frames", "200"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return next(c["cpu_ms"] for c in report["configs"] if c["mode"] == "readback")


def cpu_ms(rusage):
    return (rusage.ru_utime + rusage.ru_stime) * 1e3


def run_once(command, warmup):
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = producer.stdout.readline()
    if line.startswith("listening on "):
        consumer_script, source = "consumer.py", line.split()[-1]
    elif line.startswith("publishing on shm:"):
        consumer_script, source = "shm_consumer.py", line.strip().split("shm:", 1)[1]
    else:
        producer.kill()
        raise SystemExit("%s did not start: %r %s" % (command[0], line, producer.stderr.read()))
    consumer = subprocess.Popen([PYTHON, os.path.join(HERE, consumer_script), source,
                                 str(warmup)], stdout=subprocess.PIPE, text=True)
    out = consumer.stdout.read()
    _, status, consumer_usage = os.wait4(consumer.pid, 0)
    consumer.returncode = status
    _, status, producer_usage = os.wait4(producer.pid, 0)
    producer.returncode = status
    fields = out.split()
    if status != 0 or len(fields) < 4:
        raise SystemExit("%s failed: %s %s" % (command[0], out, producer.stderr.read()))
    frames, fps = int(fields[1]), float(fields[3])
    return fps, cpu_ms(producer_usage) / max(frames, 1), cpu_ms(consumer_usage) / max(frames, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="800x600,1920x1080")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        runs = {name: [] for name, _ in contenders(width, height, args.frames)}
        for _ in range(args.rounds):
            for name, command in contenders(width, height, args.frames):
                runs[name].append(run_once(command, args.warmup))
        floor = readback_cpu_ms(width, height)
        script = statistics.median(fps for fps, _, _ in runs["moderngl script"])
        print("\n%dx%d, %d frames, %d rounds alternating (fps after %d warm-up frames)"
              % (width, height, args.frames, args.rounds, args.warmup))
        print("%-30s %-24s %8s %8s %10s %10s %7s" % ("producer", "fps per round", "median",
                                                      "ratio", "prod ms/f", "cons ms/f", "cores"))
        for name, samples in runs.items():
            fps = statistics.median(s[0] for s in samples)
            prod = statistics.median(s[1] for s in samples)
            cons = statistics.median(s[2] for s in samples)
            print("%-30s %-24s %8.1f %8.2f %10.2f %10.2f %7.2f" % (
                name, ", ".join("%.0f" % s[0] for s in samples), fps, fps / script, prod, cons,
                fps * (prod + cons) / 1000.0))
        consumer = statistics.median(s[2] for s in runs["moderngl script"])
        cores = os.cpu_count()
        ceiling = cores * 1000.0 / (floor + consumer)
        print("TCP ceiling on %d cores: render + readback %.2f ms/f (glstream bench) + consumer "
              "%.2f ms/f -> %.1f fps = %.2f x the script" % (cores, floor, consumer, ceiling,
                                                             ceiling / script))


if __name__ == "__main__":
    main()
