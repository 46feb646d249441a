"""What one MJPEG viewer costs the main stream: glstream serves FRAMES frames, lossless, to a
`glstream recv` over TCP, with and without one viewer reading /stream.mjpg (at the default
--preview-fps 10), alternating in one run. Prints the main stream's fps (recv's figure) for each
round, the medians and their ratio.

    python3 bench/viewer_cost.py [--scene cube] [--size 800x600] [--frames 3000] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import threading
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLSTREAM = os.path.join(ROOT, "target", "release", "glstream")


def run_once(scene, width, height, frames, viewer):
    server = subprocess.Popen(
        [GLSTREAM, "-q", "--port", "0", "--http", "0", "--scene", scene, "--width", str(width),
         "--height", str(height), "--frames", str(frames), "--policy", "lossless"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = [server.stdout.readline(), server.stdout.readline()]
    tcp = next(l.split()[-1] for l in lines if l.startswith("listening on "))
    http = next(l.split()[-1] for l in lines if l.startswith("http listening on "))
    stop = threading.Event()

    def watch():
        with urllib.request.urlopen(http + "stream.mjpg") as stream:
            while not stop.is_set() and stream.read(65536):
                pass

    watcher = None
    if viewer:
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    out = subprocess.run([GLSTREAM, "recv", "-q", "--connect", tcp, "--frames", str(frames)],
                         capture_output=True, text=True, check=True).stdout
    stop.set()
    server.wait()
    return float(re.search(r"([0-9.]+) fps", out).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scene", default="cube")
    parser.add_argument("--size", default="800x600")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    runs = {False: [], True: []}
    for _ in range(args.rounds):
        for viewer in (False, True):
            runs[viewer].append(run_once(args.scene, width, height, args.frames, viewer))
    without, with_one = statistics.median(runs[False]), statistics.median(runs[True])
    print("%s %dx%d, %d frames, lossless TCP to glstream recv, %d rounds alternating"
          % (args.scene, width, height, args.frames, args.rounds))
    print("no viewer:  %s fps, median %.1f" % (", ".join("%.0f" % f for f in runs[False]), without))
    print("one viewer: %s fps, median %.1f" % (", ".join("%.0f" % f for f in runs[True]), with_one))
    print("ratio %.3f" % (with_one / without))


if __name__ == "__main__":
    main()
