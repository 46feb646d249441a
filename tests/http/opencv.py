"""Reads glstream's MJPEG stream the way a vision script would, with OpenCV's
cv2.VideoCapture(URL), and saves the frames it got.

Usage: opencv.py URL COUNT OUT_DIR
Writes OUT_DIR/frame_N.png (N = 0..COUNT-1, as OpenCV decoded them) and prints one JSON line
with each frame's shape."""

import json
import sys

import cv2


def main():
    url, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    capture = cv2.VideoCapture(url)
    if not capture.isOpened():
        sys.exit(f"cv2.VideoCapture cannot open {url}")
    shapes = []
    for n in range(count):
        ok, frame = capture.read()
        if not ok:
            sys.exit(f"cv2.VideoCapture.read failed at frame {n}")
        shapes.append(list(frame.shape))
        cv2.imwrite(f"{out}/frame_{n}.png", frame)
    capture.release()
    print(json.dumps({"shapes": shapes}))


if __name__ == "__main__":
    main()
